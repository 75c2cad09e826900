/**
 * Live progress on a terminal: one overall bar in bytes for the whole run (total known from the
 * manifests up front), images done of the total when there are several, and a line per active
 * layer, redrawn in place at most 10 times a second. Off the terminal nothing is drawn.
 * @module
 */
import type { ImportProgress } from '../pipeline/import.ts';
import { formatBytes } from './output.ts';

const BAR = 30;

function bar(done: number, total: number): string {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const n = Math.round(f * BAR);
  return `[${'#'.repeat(n)}${'.'.repeat(BAR - n)}] ${(f * 100).toFixed(0).padStart(3)}%`;
}

export class ImportProgressView {
  private readonly out: NodeJS.WriteStream;
  private total = 0;
  private images = 0;
  private imagesDone = 0;
  private layerCount = 0;
  private layersDone = 0;
  private readonly sizes = new Map<string, number>();
  private readonly bytes = new Map<string, number>();
  private readonly active = new Map<string, string>();
  private drawnLines = 0;
  private lastDraw = 0;
  private readonly started = performance.now();

  constructor(out: NodeJS.WriteStream) {
    this.out = out;
  }

  readonly update = (p: ImportProgress): void => {
    switch (p.type) {
      case 'run':
        this.total = p.totalBytes;
        this.images = p.images;
        break;
      case 'image':
        this.layerCount += p.layers;
        break;
      case 'layer-start':
        this.sizes.set(`${p.image}:${p.index}`, p.size);
        this.active.set(`${p.image}:${p.index}`, p.digest);
        break;
      case 'layer-bytes':
        this.bytes.set(`${p.image}:${p.index}`, p.bytes);
        break;
      case 'layer-done':
        this.active.delete(`${p.image}:${p.index}`);
        this.layersDone++;
        break;
      case 'image-done':
        this.imagesDone++;
        break;
    }
    this.draw(p.type !== 'layer-bytes');
  };

  private draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    let done = 0;
    for (const v of this.bytes.values()) done += v;
    const secs = (now - this.started) / 1000;
    const images = this.images > 1 ? `  images ${this.imagesDone}/${this.images}` : '';
    const lines = [
      `importing ${bar(done, this.total)} ${formatBytes(done)} / ${formatBytes(this.total)}${images}  layers ${this.layersDone}/${this.layerCount}  ${secs > 0 ? (done / 1e6 / secs).toFixed(1) : '0'} MB/s read`,
    ];
    for (const [key, digest] of [...this.active].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const [img, idx] = key.split(':').map(Number) as [number, number];
      const who = this.images > 1 ? `image ${img + 1} ` : '';
      lines.push(`  ${who}layer ${idx + 1} ${digest.slice(7, 19)} ${bar(this.bytes.get(key) ?? 0, this.sizes.get(key) ?? 0)}`);
    }
    this.clear();
    this.out.write(lines.join('\n') + '\n');
    this.drawnLines = lines.length;
  }

  clear(): void {
    if (this.drawnLines > 0) this.out.write(`\x1b[${this.drawnLines}A\x1b[J`);
    this.drawnLines = 0;
  }
}
