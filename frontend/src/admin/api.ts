// The admin part of the REST contract (docs/CONTRACTS.md): dataset versions, exports, model versions and training
// runs, as typed calls for the curation and registry pages. Errors are ApiErrors with the server's message.
// Response types come from the OpenAPI schema (see ../api.ts); free-form JSON fields are narrowed here.

import { request, type Narrow, type Page, type Schemas } from '../api';

export type ExportFormat = Schemas['FormatEnum'];
export const EXPORT_FORMATS: ExportFormat[] = ['training_ready', 'coco', 'sr', 'csv'];
export const ENDED = ['succeeded', 'failed', 'cancelled'];

export type JobSummary = Schemas['JobSummary'];

export interface DatasetSummary {
  studies: number;
  per_class?: Record<string, number>;
  boxes_per_provenance?: Record<string, number>;
  boxes_excluded?: Record<string, number>;
  reviewers?: string[];
}

export type DatasetVersion = Narrow<Schemas['DatasetVersion'], { summary: DatasetSummary }>;

export interface DatasetCriteria {
  name: string; reviewed_only: boolean; study_date_from: string; study_date_to: string; reviewed_from: string | null;
  reviewed_to: string | null; labels: string[]; reviewers: string[];
}

export type Export = Schemas['Export'];

export interface StudyFigures { accuracy?: number | null; auc?: number | null; sensitivity?: number | null; specificity?: number | null }
export interface HeldOut { study?: StudyFigures }

export type ModelVersion = Narrow<Schemas['ModelVersion'], {
  classes: string[]; held_out: HeldOut | null; active_on_held_out: HeldOut | null;
  metrics: { comparison?: { held_out_studies?: unknown[] } } | null;
}>;

export interface TrainingConfig { task: string; iterations: number; seed: number; start_bundle: number | null }

export type TrainingRun = Narrow<Schemas['TrainingRun'], { config: TrainingConfig }>;

export interface LossPoint { iter: number; loss: number | null; val_loss?: number | null }

export type TrainingProgress = Narrow<Schemas['TrainingProgress'], { points: LossPoint[] }>;

const list = <T>(url: string) => request<Page<T>>('GET', url).then((p) => p.results);

export const adminApi = {
  datasetVersions: () => list<DatasetVersion>('/api/dataset-versions/?limit=100'),
  createDatasetVersion: (criteria: DatasetCriteria) => request<DatasetVersion>('POST', '/api/dataset-versions/', criteria),
  exports: () => list<Export>('/api/exports/?limit=50'),
  createExport: (datasetVersion: number, format: ExportFormat, deidentify: boolean) =>
    request<Export>('POST', '/api/exports/', { dataset_version: datasetVersion, format, deidentify }),
  modelVersions: () => list<ModelVersion>('/api/model-versions/?limit=100'),
  promote: (id: number) => request<ModelVersion>('POST', `/api/model-versions/${id}/promote/`),
  rollback: () => request<ModelVersion>('POST', '/api/model-versions/rollback/'),
  trainingRuns: () => list<TrainingRun>('/api/training-runs/?limit=50'),
  startTraining: (datasetVersion: number, config: TrainingConfig) =>
    request<TrainingRun>('POST', '/api/training-runs/', { dataset_version: datasetVersion, config }),
  cancelTraining: (id: number) => request<TrainingRun>('POST', `/api/training-runs/${id}/cancel/`),
  progress: (id: number, after: number) => request<TrainingProgress>('GET', `/api/training-runs/${id}/progress/?after=${after}`),
};
