// The REST contract (docs/CONTRACTS.md) as typed calls. Session cookie authenticates; writes send the CSRF token.

// The types come from the OpenAPI schema (frontend/openapi.yaml, which tests/webapp/test_openapi_file.py keeps equal
// to what the server generates): `npm run build` turns it into src/api-schema.d.ts, so a field the server renames or
// drops fails `tsc` wherever the client reads it. Only JSON fields the schema leaves free-form are narrowed here,
// and only fields the schema has (Narrow rejects a key it does not know).
import type { components } from './api-schema';

export type Schemas = components['schemas'];
/** ``T`` with the listed fields' types replaced; each key must be one of ``T``'s. */
export type Narrow<T, R extends { [K in keyof R]: K extends keyof T ? unknown : never }> = Omit<T, keyof R> & R;

export type StudyStatus = Schemas['StudyStatusEnum'];
export type DecisionLabel = Schemas['DecisionLabelEnum'];
export type BoxLabel = Schemas['BoxLabelEnum'];

export type Me = Schemas['Me'];

export interface Page<T> { count: number; next: string | null; previous: string | null; results: T[] }

export type StudyRow = Narrow<Schemas['WorklistRow'], { decision_label?: DecisionLabel | null }>;

export interface InstanceRef { sop_instance_uid: string; instance_number: number | null; z_mm: number | null; rows: number; columns: number }
export type SeriesRef = Narrow<Schemas['Series'], { instances: InstanceRef[] }>;

export type Decision = Schemas['Decision'];

export type SliceInfo = Narrow<Schemas['SliceResult'], { probabilities: Record<string, number> }>;

export type Analysis = Narrow<Schemas['AnalysisRunDetail'], { probabilities: Record<string, number>; slices: SliceInfo[] }>;

export type StudyDetail = Narrow<Schemas['StudyDetail'], {
  decision_label?: DecisionLabel | null;
  series: SeriesRef[];
  latest_analysis: { id: number; series_instance_uid?: string } | null;
  decision: Decision | null;
}>;

export type Box = Schemas['Box'];

export type Job = Narrow<Schemas['Job'], { params: { study_id?: number } }>;

export type UploadResult = Schemas['IngestResult'];

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
  /** Every box of the study, however many pages: a study with more than a page of boxes shows them all. */
  boxes: (studyId: number) => everyPage<Box>(`/api/studies/${studyId}/boxes/?limit=1000`),
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

/** All items of a paginated list, following the server's ``next`` links until there are none. */
async function everyPage<T>(url: string): Promise<T[]> {
  const items: T[] = [];
  for (let next: string | null = url; next !== null;) {
    const page: Page<T> = await request<Page<T>>('GET', next);
    items.push(...page.results);
    next = page.next;
  }
  return items;
}

/** A multipart upload with progress (fetch has no upload progress events). */
export type UploadResponse = Narrow<Schemas['UploadResponse'], { jobs: Job[] }>;

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
      if (data.results) resolve({ results: data.results, jobs: data.jobs ?? [] });
      else reject(new ApiError(xhr.status, data));
    };
    xhr.onerror = () => reject(new ApiError(0, { detail: 'network error' }));
    xhr.send(form);
  });
}
