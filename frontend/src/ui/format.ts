// Display formats shared by the worklist and the viewer.

export const STATUS_TEXT: Record<string, string> = {
  new: 'New', analysing: 'Analysing', ai_done: 'AI done', in_review: 'In review', reviewed: 'Reviewed', failed: 'Failed',
};

export const DECISION_TEXT: Record<string, string> = { covid: 'COVID-19', cap: 'CAP', np: 'NP', indeterminate: 'Indeterminate' };

export const BOX_LABEL_TEXT: Record<string, string> = { covid_lesion: 'COVID lesion', cap_lesion: 'CAP lesion', other: 'Other' };

/** AI class keys (NP, CAP, COVID) as shown to clinicians. */
export function classText(key: string | null | undefined): string {
  if (!key) return '—';
  return key.toUpperCase() === 'COVID' ? 'COVID-19' : key.toUpperCase();
}

export function percent(value: number | null | undefined, digits = 0): string {
  return value == null ? '—' : `${(value * 100).toFixed(digits)}%`;
}

/** What the viewer's banner and the worklist's marker say of a study outside the model's experience. */
export const OUTSIDE_TEXT = "Outside the model's experience: the AI result is unreliable";

/** infection_percent and opacity figures are already in percent. */
export function infection(value: number | null | undefined): string {
  return value == null ? '—' : `${value.toFixed(1)}%`;
}

/** DICOM DA (YYYYMMDD) to YYYY-MM-DD. */
export function dicomDate(da: string | null | undefined): string {
  return da && /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : da || '—';
}

export function relativeTime(iso: string): string {
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toISOString().slice(0, 10);
}
