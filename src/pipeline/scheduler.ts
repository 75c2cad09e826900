/**
 * The layer scheduler of an import run: layers largest first, a few at a time, each diff_id
 * read once while that works, and a layer failing an image only from that image's own blob.
 * @module
 */
import { ERROR_CODES, VeritreeError, isVeritreeError } from '../errors.ts';
import type { LayoutLocation } from '../oci/layout-files.ts';
import type { ResolvedLayer } from '../oci/layout.ts';
import type { LayerResult } from './layer-import.ts';

interface LayerClaim {
  layer: ResolvedLayer;
  layout: LayoutLocation;
  image: number;
}

/** A layer's result for one image, and whether that image's own blob was read for it. */
export interface LayerOutcome {
  result: LayerResult;
  read: boolean;
}

function isAbort(e: unknown): boolean {
  return isVeritreeError(e) && e.code === ERROR_CODES.ABORTED;
}

/**
 * Runs layers largest first, a few at a time, each diff_id once while that works. `request`
 * gives an image the layer's result, whichever image's blob was read. A layer fails for an
 * image only from that image's own blob: when another image's blob fails, each image waiting on
 * that diff_id reads its own blob once (one at a time per diff_id, so a success serves the rest).
 */
export class LayerScheduler {
  /** The latest attempt at each diff_id, and which image's blob it reads. */
  private readonly flights = new Map<string, { result: Promise<LayerResult>; image: number }>();
  /** What each image says about each diff_id: its own blob, to fall back on. */
  private readonly claims = new Map<string, Map<number, LayerClaim>>();
  private readonly queue: { start: () => void }[] = [];
  private running = 0;
  readonly blobOpens: Record<string, number> = {};
  private readonly limit: number;
  private readonly run: (layer: ResolvedLayer, layout: LayoutLocation, image: number) => Promise<LayerResult>;

  constructor(limit: number, run: (layer: ResolvedLayer, layout: LayoutLocation, image: number) => Promise<LayerResult>) {
    this.limit = limit;
    this.run = run;
  }

  /** Queues every layer of every image before any starts, so that the order is largest first. */
  plan(items: LayerClaim[]): void {
    const sorted = [...items].sort((a, b) => b.layer.descriptor.size - a.layer.descriptor.size);
    for (const it of sorted) {
      const byImage = this.claims.get(it.layer.diffId) ?? new Map<number, LayerClaim>();
      if (!byImage.has(it.image)) byImage.set(it.image, it);
      this.claims.set(it.layer.diffId, byImage);
      if (this.flights.has(it.layer.diffId)) continue;
      this.flights.set(it.layer.diffId, { result: this.enqueue(it), image: it.image });
    }
    this.pump();
  }

  /** One read of `it`'s blob, started when a slot is free. */
  private enqueue(it: LayerClaim): Promise<LayerResult> {
    let start!: () => void;
    const gate = new Promise<void>((r) => (start = r));
    const p = gate.then(() => this.run(it.layer, it.layout, it.image)).then((r) => {
      this.blobOpens[it.layer.diffId] = (this.blobOpens[it.layer.diffId] ?? 0) + r.blobOpens;
      return r;
    });
    // Only the slot is freed here; the outcome goes to request().
    p.then(
      () => this.done(),
      () => this.done()
    );
    this.queue.push({ start });
    return p;
  }

  private done(): void {
    this.running--;
    this.pump();
  }

  private pump(): void {
    while (this.running < this.limit && this.queue.length > 0) {
      this.running++;
      (this.queue.shift() as { start: () => void }).start();
    }
  }

  /** Drops what has not started (after an abort): those layers fail as interrupted. */
  cancelPending(): void {
    for (const q of this.queue.splice(0)) {
      this.running++;
      q.start();
    }
  }

  /**
   * The layer `diffId` for `image`. Each turn of the loop either ends or moves to a newer attempt,
   * and each image starts at most one, so it ends; an abort ends it at the next failure.
   */
  async request(diffId: string, image: number): Promise<LayerOutcome> {
    let flight = this.flights.get(diffId);
    if (!flight) throw new VeritreeError(ERROR_CODES.INTERNAL, `layer ${diffId} was not planned`);
    for (;;) {
      try {
        return { result: await flight.result, read: flight.image === image };
      } catch (e) {
        const own = this.claims.get(diffId)?.get(image);
        if (flight.image === image || isAbort(e) || own === undefined) throw e;
        const latest = this.flights.get(diffId) as { result: Promise<LayerResult>; image: number };
        if (latest !== flight) {
          flight = latest;
          continue;
        }
        flight = { result: this.enqueue(own), image };
        this.flights.set(diffId, flight);
        this.pump();
      }
    }
  }
}

/** Imports many images in one run (see the module comment). Never throws for one bad image. */
