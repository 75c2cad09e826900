/**
 * Live progress on a terminal: one overall bar in bytes for the whole run (total known from the
 * manifests up front), images done of the total when there are several, and a line per active
 * layer, redrawn in place at most 10 times a second. Off the terminal nothing is drawn.
 * @module
 */
import type { ImportProgress } from '../pipeline/import.ts';
import { formatBytes } from './output.ts';
import { isQuiet, takeOver } from './startup-line.ts';

const BAR = 30;

/** One line redrawn in place on stderr, at most 10 times a second; nothing when not `enabled` or with --quiet. */
export function liveLine(enabled: boolean): { show(text: string): void; done(): void } {
  let last = 0;
  let shown = false;
  const on = enabled && !isQuiet();
  return {
    show(text) {
      if (!on || performance.now() - last < 100) return;
      last = performance.now();
      if (!shown) takeOver();
      shown = true;
      process.stderr.write(`\r\x1b[K${text}`);
    },
    done() {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

export function bar(done: number, total: number): string {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const n = Math.round(f * BAR);
  return `[${'#'.repeat(n)}${'.'.repeat(BAR - n)}] ${(f * 100).toFixed(0).padStart(3)}%`;
}

function duration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

interface LayerState {
  diffId: string;
  size: number;
  bytes: number;
  tarBytes: number;
  entries: number;
  finishing: boolean;
}

export class ImportProgressView {
  private readonly out: NodeJS.WriteStream;
  private total = 0;
  private images = 0;
  private imagesDone = 0;
  private layerCount = 0;
  private layersDone = 0;
  /** Blob bytes and tar bytes of layers that are done (or present) and still in the totals. */
  private doneBytes = 0;
  private doneTarBytes = 0;
  private doneEntries = 0;
  private readonly layers = new Map<string, LayerState>();
  private readonly publishing = new Set<number>();
  private drawnLines = 0;
  private lastDraw = 0;
  private readonly started = performance.now();

  constructor(out: NodeJS.WriteStream) {
    this.out = out;
  }

  readonly update = (p: ImportProgress): void => {
    const key = 'index' in p ? `${p.image}:${p.index}` : '';
    switch (p.type) {
      case 'run':
        this.total = p.totalBytes;
        this.images = p.images;
        break;
      case 'image':
        this.layerCount += p.layers;
        break;
      case 'layer-start':
        this.layers.set(key, { diffId: p.diffId, size: p.size, bytes: 0, tarBytes: 0, entries: 0, finishing: false });
        break;
      case 'layer-bytes': {
        const l = this.layers.get(key);
        if (l) Object.assign(l, { bytes: p.bytes, tarBytes: p.tarBytes, entries: p.entries });
        break;
      }
      case 'layer-finishing': {
        const l = this.layers.get(key);
        if (l) l.finishing = true;
        break;
      }
      case 'layer-done': {
        const l = this.layers.get(key);
        this.doneBytes += p.size;
        if (l) {
          this.doneTarBytes += l.tarBytes;
          this.doneEntries += l.entries;
          this.layers.delete(key);
        }
        this.layersDone++;
        break;
      }
      case 'image-publishing':
        this.publishing.add(p.image);
        break;
      case 'image-done':
        this.publishing.delete(p.image);
        this.imagesDone++;
        break;
    }
    this.draw(p.type !== 'layer-bytes');
  };

  private draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    if (this.drawnLines === 0) takeOver();
    let done = this.doneBytes;
    let tar = this.doneTarBytes;
    let entries = this.doneEntries;
    for (const l of this.layers.values()) {
      done += l.bytes;
      tar += l.tarBytes;
      entries += l.entries;
    }
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && done < this.total ? `, about ${duration((this.total - done) / rate)} left` : '';
    const images = this.images > 1 ? `  images ${this.imagesDone}/${this.images}` : '';
    const lines = [
      `importing ${bar(done, this.total)} ${formatBytes(done)} / ${formatBytes(this.total)} of blobs${images}  layers ${this.layersDone}/${this.layerCount}`,
      `  ${formatBytes(tar)} of tar, ${entries} entries, ${secs > 0 ? (tar / 1e6 / secs).toFixed(1) : '0'} MB/s of tar${eta}`,
    ];
    for (const [k, l] of [...this.layers].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const [img, idx] = k.split(':').map(Number) as [number, number];
      const who = this.images > 1 ? `image ${img + 1} ` : '';
      const state = l.finishing ? 'read; storing its files, syncing, publishing its stream' : bar(l.bytes, l.size);
      lines.push(`  ${who}layer ${idx + 1} ${l.diffId.slice(7, 19)} ${state}`);
    }
    for (const img of this.publishing) lines.push(`  ${this.images > 1 ? `image ${img + 1}: ` : ''}every layer stored; writing the config and manifest streams, syncing, tagging`);
    this.clear();
    this.out.write(lines.join('\n') + '\n');
    this.drawnLines = lines.length;
  }

  clear(): void {
    if (this.drawnLines > 0) this.out.write(`\x1b[${this.drawnLines}A\x1b[J`);
    this.drawnLines = 0;
  }
}
