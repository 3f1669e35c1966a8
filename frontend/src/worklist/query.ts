// The worklist's filters, search and sort as a query string. The worklist keeps them in its own URL; its rows
// carry them to the viewer, whose "next case" asks the server for the next study in that same list and whose way
// back returns to it.

export const WORKLIST_FILTERS = ['status', 'ai_label', 'outside', 'reviewer', 'search', 'ordering'] as const;

/** The worklist parameters of a query string (``location.search``), without paging or anything else. */
export function worklistQuery(search: string): URLSearchParams {
  const from = new URLSearchParams(search);
  const q = new URLSearchParams();
  for (const key of WORKLIST_FILTERS) for (const value of from.getAll(key)) if (value.trim()) q.append(key, value.trim());
  return q;
}

/** ``path`` with the query appended when there is one. */
export function withQuery(path: string, q: URLSearchParams): string {
  const text = q.toString();
  return text ? `${path}?${text}` : path;
}
