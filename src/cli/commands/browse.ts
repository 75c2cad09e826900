/** `veritree ls`, `cat` and `diff`: a stored image browsed from its merged tree, as ostree ls/cat/diff browse a commit. */
import type { Command } from 'commander';
import { openRepository } from '../../index.ts';
import { ERROR_CODES, VeritreeError } from '../../errors.ts';
import { lockOptionsFrom } from '../../store/lock.ts';
import type { Repository } from '../../store/repository.ts';
import { shown } from '../../oci/names.ts';
import { lockTimeoutOption, lockWaitOptions, repoOption, resolveRepo } from '../repo-option.ts';
import { interruptSignal } from '../signals.ts';
import { warn } from '../startup-line.ts';

const TYPE_CHAR: Record<string, string> = { file: '-', dir: 'd', symlink: 'l', char: 'c', block: 'b', fifo: 'p', hardlink: 'h' };

/** Runs `work` under the repository's shared lock: nothing is removed while it reads. */
async function underLock<T>(repo: Repository, lockTimeout: number | undefined, work: () => Promise<T>): Promise<T> {
  const lock = await repo.lockShared(lockOptionsFrom({ signal: interruptSignal(), ...lockWaitOptions(lockTimeout) }));
  try {
    return await work();
  } finally {
    await lock.release();
  }
}

export function registerBrowse(program: Command): void {
  repoOption(lockTimeoutOption(
    program
      .command('ls')
      .description("list a folder of an image's merged tree (as checkout would write it), without checking it out")
      .argument('<image>', 'the tag')
      .argument('[path]', 'a path in the image (default /)', '/')
      .option('-R, --recursive', 'everything beneath PATH')
      .addHelpText('after', '\nOne line per entry, as ostree ls prints them: type and mode, owner, group, size, path\n(and -> target for a symlink, => target for a hard link).')
  )).action(async (image: string, path: string, o: { repo?: string; recursive?: boolean; lockTimeout?: number }) => {
    const [{ imageTree }, { listEntries, treePath }] = await Promise.all([import('../../merge/image-tree.ts'), import('../../merge/browse.ts')]);
    const repo = await openRepository(resolveRepo(o.repo));
    const at = treePath(path);
    const tree = await underLock(repo, o.lockTimeout, () => imageTree(repo, image));
    const out: string[] = [];
    for (const { path: p, node: n } of listEntries(tree, image, at, o.recursive === true)) {
      const kind = n.hardlinkTo !== null ? '-' : (TYPE_CHAR[n.type] ?? '?');
      const tail = n.type === 'symlink' ? ` -> ${shown(n.symlinkTarget)}` : n.hardlinkTo !== null ? ` => /${shown(n.hardlinkTo)}` : '';
      out.push(`${kind}${n.mode.toString(8).padStart(5, '0')} ${n.uid} ${n.gid} ${String(n.type === 'file' ? n.size : 0).padStart(10)} /${shown(p)}${tail}`);
      if (out.length >= 1024) process.stdout.write(out.splice(0).join('\n') + '\n');
    }
    if (out.length > 0) process.stdout.write(out.join('\n') + '\n');
  });

  repoOption(lockTimeoutOption(
    program
      .command('cat')
      .description("write one regular file of an image to stdout, checked against its digest as it is read")
      .argument('<image>', 'the tag')
      .argument('<path>', 'a regular file in the image (a hard link is followed)')
      .addHelpText('after', "\nA file stored as an object is hashed as it is copied out: if its bytes do not hash to its name,\nthe command fails (exit 4) after writing them; discard the output.")
  )).action(async (image: string, path: string, o: { repo?: string; lockTimeout?: number }) => {
    const [{ imageTree }, { catFile, treePath }] = await Promise.all([import('../../merge/image-tree.ts'), import('../../merge/browse.ts')]);
    const repo = await openRepository(resolveRepo(o.repo));
    const at = treePath(path);
    const signal = interruptSignal();
    await underLock(repo, o.lockTimeout, async () => {
      const tree = await imageTree(repo, image);
      await catFile(repo, tree, image, at, (b) => new Promise<void>((resolve, reject) => process.stdout.write(b, (e) => (e ? reject(e) : resolve()))), signal);
    });
  });

  repoOption(lockTimeoutOption(
    program
      .command('diff')
      .description('list what differs between two images\' merged trees: A added, D deleted, M modified')
      .argument('<from>', 'the first tag')
      .argument('<to>', 'the second tag')
      .addHelpText('after', "\nAs ostree diff prints it: one line per path, `A /path`, `D /path` or `M /path` (type, mode, owner,\nmtime, content, link target or xattrs differ). A folder added or deleted is listed with\neverything beneath it. Exit 0 whether or not they differ.")
  )).action(async (from: string, to: string, o: { repo?: string; lockTimeout?: number }) => {
    const [{ imageTree }, { diffTrees }] = await Promise.all([import('../../merge/image-tree.ts'), import('../../merge/browse.ts')]);
    const repo = await openRepository(resolveRepo(o.repo));
    if (from === to) throw new VeritreeError(ERROR_CODES.USAGE, 'diff: give two different images');
    const [a, b] = await underLock(repo, o.lockTimeout, async () => [await imageTree(repo, from), await imageTree(repo, to)] as const);
    for (const w of [...a.warnings, ...b.warnings]) warn(`/${shown(w.path)}: ${w.message}`);
    const out: string[] = [];
    for (const c of diffTrees(a, b)) {
      out.push(`${c.kind} /${shown(c.path)}`);
      if (out.length >= 1024) process.stdout.write(out.splice(0).join('\n') + '\n');
    }
    if (out.length > 0) process.stdout.write(out.join('\n') + '\n');
  });
}
