/**
 * The tree a composefs image of stored layers is written from: the layers merged by composefs-rs's
 * rules, written as dump lines and read back by the dumpfile reader `mkfs` uses, so that the image
 * is by construction what `mkcomposefs --from-file` makes of `veritree dump`. A function of its
 * own so that the merged tree is garbage once the reader's tree is made: the image is written
 * from the one tree, not with both held.
 * @module
 */
import { parseDumpfile } from '../erofs/dump-parse.ts';
import type { CfsTree } from '../erofs/tree.ts';
import type { Repository } from '../store/repository.ts';
import { dumpLines } from './dump.ts';
import { layersTree } from './image-tree.ts';

export interface ComposefsTreeOptions {
  onWarning?: (path: string, message: string) => void;
  signal?: AbortSignal;
}

/** The reader's tree of these layers' merged tree (diff_ids, bottom first). */
export async function composefsTreeOf(repo: Repository, diffIds: string[], opts: ComposefsTreeOptions = {}): Promise<CfsTree> {
  const tree = await layersTree(repo, diffIds, 'composefs', opts.signal);
  for (const w of tree.warnings) opts.onWarning?.(w.path, w.message);
  // Lines go to the reader in pieces of about 1 MiB: a piece per line would cost the reader a
  // decode and a turn of its loop for each of tens of thousands of entries.
  const pieces = function* (): Generator<Buffer> {
    let batch: string[] = [];
    let size = 0;
    for (const line of dumpLines(tree, opts.signal)) {
      batch.push(line);
      size += line.length + 1;
      if (size >= 1 << 20) {
        yield Buffer.from(`${batch.join('\n')}\n`, 'latin1');
        batch = [];
        size = 0;
      }
    }
    if (batch.length > 0) yield Buffer.from(`${batch.join('\n')}\n`, 'latin1');
  };
  return parseDumpfile(pieces(), opts.signal ? { signal: opts.signal } : {});
}
