/** The shape of `veritree bench`'s report (report.json), apart from the engine that fills it. */
import type { ModelCheck, StageModel } from './model.ts';
import type { StageCost } from './stages.ts';
import type { Peer, Point } from './workloads.ts';

export interface BenchOptions {
  quick: boolean;
  out: string;
  /** Also import this image (oci:DIR[:REF]) at each jobs value. */
  image?: string | undefined;
  onProgress?: ((line: string) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface Workload {
  name: string;
  bytes: number;
  /** Runs of each setting and peer, interleaved. */
  runs: number;
  points: Point[];
  peers: Peer[];
  /** Imports: the stage model from the runs at jobs = cores. */
  model?: StageModel;
  /** Imports of synthetic images: each stage alone, one thread. */
  stages?: StageCost[];
  /** Imports of synthetic images: the model against `taskset` on one core and on two. */
  check?: ModelCheck;
}

export interface BenchReport {
  command: string;
  date: string;
  quick: boolean;
  host: Record<string, string | number>;
  /** OpenSSL SHA-256 over one buffer, one core; the limit: the fastest one-core SHA-256 (OpenSSL or a back end) times the cores. */
  opensslOneCoreMBps: number;
  limitMBps: number;
  backends: { impl: string; size: string; mbps: number; ratioToOpenssl: number }[];
  workloads: Workload[];
}
