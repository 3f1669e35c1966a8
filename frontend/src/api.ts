// The REST contract (docs/CONTRACTS.md) as typed calls. Session cookie authenticates; writes send the CSRF token.

export type StudyStatus = 'new' | 'analysing' | 'ai_done' | 'in_review' | 'reviewed' | 'failed';
export type DecisionLabel = 'covid' | 'cap' | 'np' | 'indeterminate';
export type BoxLabel = 'covid_lesion' | 'cap_lesion' | 'other';

export interface Me { username: string; roles: string[] }

export interface Page<T> { count: number; next: string | null; previous: string | null; results: T[] }

export interface StudyRow {
  id: number;
  study_instance_uid: string;
  patient_id: string;
  patient_name: string;
  study_date: string;
  accession_number: string;
  study_description: string;
  status: StudyStatus;
  ai_label: string | null;
  ai_probability: number | null;
  ai_uncertainty: number | null;
  infection_percent: number | null;
  opacity_percent: number | null;
  /** The latest AI run found the study outside the model's experience: its result is unreliable. */
  ai_outside: boolean;
  reviewer: string | null;
  decision_label: DecisionLabel | null;
  updated_at: string;
}

export interface InstanceRef { sop_instance_uid: string; instance_number: number | null; z_mm: number | null; rows: number; columns: number }
export interface SeriesRef { series_instance_uid: string; modality: string; series_description: string; instances: InstanceRef[] }

export interface Decision { label: DecisionLabel; comment: string; version: number; reviewed?: boolean; decided_by?: string | null }

export interface SliceInfo {
  index: number;
  sop_instance_uid: string;
  instance_number: number | null;
  z_mm: number | null;
  probabilities: Record<string, number>;
  lung_area_px: number;
  infected_area_px: number;
  opacity_px: number;
  has_maps: boolean;
}

export interface Opacity { percent: number; high_percent: number; per_lung: { left: number; right: number } }

export interface Analysis {
  id: number;
  status: string;
  model_name: string;
  model_version: string;
  label: string;
  probabilities: Record<string, number>;
  infection_percent: number | null;
  /** lungscope.analysis/2; null for older runs. */
  opacity: Opacity | null;
  domain: { score: number; threshold: number; outside: boolean } | null;
  lung_volume_ml: number | null;
  series_instance_uid: string;
  created_at: string;
  slices: SliceInfo[];
}

export interface StudyDetail extends StudyRow {
  series: SeriesRef[];
  latest_analysis: { id: number; series_instance_uid?: string } | null;
  decision: Decision | null;
}

export interface Box {
  id: number;
  study: number;
  analysis_run: number | null;
  sop_instance_uid: string;
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  label: BoxLabel;
  score: number | null;
  provenance: 'ai' | 'ai_accepted' | 'ai_edited' | 'human';
  status: 'proposed' | 'accepted' | 'rejected' | 'deleted';
  version: number;
}

export interface Job {
  id: number; kind: string; status: string; progress: number | null; message: string; error: string;
  params: { study_id?: number };
}

export interface UploadResult { name: string; status: 'stored' | 'duplicate' | 'rejected' | 'conflict'; reason: string }

export class ApiError extends Error {
  constructor(readonly status: number, readonly body: unknown) {
    super(describe(status, body));
  }
  get stale(): boolean { return this.status === 409; }
}

function describe(status: number, body: unknown): string {
  if (body && typeof body === 'object') {
    const detail = (body as Record<string, unknown>).detail;
    if (typeof detail === 'string') return detail;
    return Object.entries(body).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`).join('; ');
  }
  return `HTTP ${status}`;
}

export function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : '';
}

export async function request<T>(method: string, url: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRFToken'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, {
    method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? safeJson(text) : null;
  if (!res.ok) throw new ApiError(res.status, data);
  return data as T;
}

function safeJson(text: string): unknown {
  try { return JSON.parse(text); } catch { return { detail: text.slice(0, 200) }; }
}

export const api = {
  me: () => request<Me>('GET', '/api/me/'),
  studies: (query: URLSearchParams) => request<Page<StudyRow>>('GET', `/api/studies/?${query}`),
  study: (id: number) => request<StudyDetail>('GET', `/api/studies/${id}/`),
  analysis: (id: number) => request<Analysis>('GET', `/api/studies/${id}/analysis/`),
  jobs: () => request<Page<Job>>('GET', '/api/jobs/?limit=50'),
  boxes: (studyId: number) => request<Page<Box> | Box[]>('GET', `/api/studies/${studyId}/boxes/?limit=1000`).then(unpage),
  box: (id: number) => request<Box>('GET', `/api/boxes/${id}/`),
  createBox: (studyId: number, box: Pick<Box, 'sop_instance_uid' | 'x0' | 'y0' | 'x1' | 'y1' | 'label'>) =>
    request<Box>('POST', `/api/studies/${studyId}/boxes/`, box),
  updateBox: (box: Box, patch: Partial<Pick<Box, 'x0' | 'y0' | 'x1' | 'y1' | 'label'>>) =>
    request<Box>('PATCH', `/api/boxes/${box.id}/`, { ...patch, version: box.version }),
  acceptBox: (box: Box) => request<Box>('POST', `/api/boxes/${box.id}/accept/`, { version: box.version }),
  rejectBox: (box: Box) => request<Box>('POST', `/api/boxes/${box.id}/reject/`, { version: box.version }),
  deleteBox: (box: Box) => request<unknown>('DELETE', `/api/boxes/${box.id}/?version=${box.version}`),
  decision: (studyId: number) => request<Decision>('GET', `/api/studies/${studyId}/decision/`),
  saveDecision: (studyId: number, d: { label: DecisionLabel; comment: string; version: number | null }) =>
    request<Decision>('PUT', `/api/studies/${studyId}/decision/`, d),
  startReview: (studyId: number) => request<{ status: StudyStatus }>('POST', `/api/studies/${studyId}/start-review/`, {}),
  /** ``worklist``: the filters and sort the clinician came from, so "next" is the next study of that list. */
  markReviewed: (studyId: number, worklist: URLSearchParams) =>
    request<{ next_study_id: number | null }>('POST', `/api/studies/${studyId}/mark-reviewed/?${worklist}`, {}),
};

function unpage<T>(data: Page<T> | T[]): T[] {
  return Array.isArray(data) ? data : data.results;
}

/** A multipart upload with progress (fetch has no upload progress events). */
export interface UploadResponse { results: UploadResult[]; jobs?: Job[] }

export function upload(files: File[], onProgress: (loaded: number, total: number) => void): Promise<UploadResponse> {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const f of files) form.append('files', f, f.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/uploads/');
    xhr.setRequestHeader('X-CSRFToken', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onload = () => {
      const data = safeJson(xhr.responseText || '{}') as Partial<UploadResponse>;
      if (data.results) resolve({ results: data.results, jobs: data.jobs });
      else reject(new ApiError(xhr.status, data));
    };
    xhr.onerror = () => reject(new ApiError(0, { detail: 'network error' }));
    xhr.send(form);
  });
}
