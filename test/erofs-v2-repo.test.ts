/**
 * A repository whose EROFS format is V2 (`veritree init --erofs-version 2`, SHA-256 and SHA-512):
 * `image` writes the V2 image of the tag under the config's `composefs.image` ref, `compute-id`
 * and `images --json --image-id` name the same id, fsck accepts the store, and the image mounts
 * with the kernel's erofs and overlayfs and serves its files (inline, from objects, through a
 * hard link and a symlink). Two files of the same content share their overlay xattrs, which V2
 * refers to by absolute offset: gc must still find their object through them.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, tempDir, veritree } from './helpers.ts';
import { plainLayerLayout } from './fixtures/oci.ts';
import { tarOf } from './fixtures/tar.ts';
import { openRepository } from '../src/index.ts';
import { readSplitStream } from '../src/store/splitstream-reader.ts';
import { taggedImage } from '../src/store/images.ts';
import { parseDumpfile } from '../src/erofs/dump-parse.ts';
import { writeImageV2 } from '../src/erofs/writer-v2.ts';
import { mountUnavailable } from '../src/erofs/mount.ts';
import { toHex, verityDigest } from '../src/verity/index.ts';
import { debugImage } from './erofs-debug.ts';
import type { HashAlgorithm } from '../src/verity/constants.ts';

const whyNoMount = mountUnavailable();
const root = tempDir('veritree-v2-repo-');
after(() => !process.env.VERITREE_KEEP && cleanup(root));

const BIG = 'a file long enough to be an object of its own, not inline in the image\n'.repeat(4);
let layoutPath: string | null = null;
async function layout(): Promise<string> {
  if (layoutPath === null) {
    layoutPath = join(root, 'layout');
    plainLayerLayout(
      layoutPath,
      't',
      await tarOf([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/hello', content: 'hi\n' },
        { name: 'usr/', type: 'directory' },
        { name: 'usr/share/', type: 'directory' },
        { name: 'usr/share/big.txt', content: BIG },
        { name: 'usr/share/big-link.txt', type: 'link', linkname: 'usr/share/big.txt' },
        { name: 'usr/share/copy.txt', content: BIG },
        { name: 'etc/big', type: 'symlink', linkname: '../usr/share/big.txt' },
      ])
    );
  }
  return layoutPath;
}

async function configRefs(repoPath: string, tag: string): Promise<Record<string, string>> {
  const repo = await openRepository(repoPath);
  const config = readSplitStream(await repo.readStreamBytes((await taggedImage(repo, tag)).configStream));
  return Object.fromEntries(config.namedRefs.filter((r) => r.name.startsWith('composefs.image')).map((r) => [r.name, config.streamRefs[r.index] as string]));
}

for (const hash of ['sha256', 'sha512'] as HashAlgorithm[]) {
  const repo = join(root, `v2-${hash}`);
  let id = '';

  test(`V2 ${hash} repository: image, compute-id and images --image-id agree; the image is V2 of the tag's tree`, async () => {
    const init = veritree(['init', '--repo', repo, '--erofs-version', '2', '--hash', hash]);
    assert.equal(init.status, 0, init.stderr);
    assert.match(init.stdout, /EROFS format V2/);
    const imported = veritree(['import', `oci:${await layout()}:t`, 'img', '--repo', repo]);
    assert.equal(imported.status, 0, imported.stderr);
    const computed = veritree(['compute-id', 'img', '--repo', repo]);
    assert.equal(computed.status, 0, computed.stderr);
    const r = veritree(['image', 'img', '--json', '--repo', repo]);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { image: string; format: number; version: number; extra: unknown[]; skipped: number[] };
    id = report.image;
    assert.equal(report.format, 2);
    assert.equal(report.version, 2, 'composefs_version 2');
    assert.deepEqual(report.extra, []);
    assert.deepEqual(report.skipped, []);
    assert.equal(computed.stdout.trim(), id, 'compute-id names the image image writes');
    const bytes = readFileSync(join(repo, 'images', id));
    assert.equal(toHex(verityDigest(bytes, hash)), id);
    assert.equal(bytes.readUInt32LE(12), 2);
    if (hash === 'sha256') {
      // The V2 writer's image of the tree `veritree dump` prints (a dumpfile's digests are SHA-256 ones).
      const dump = veritree(['dump', 'img', '--repo', repo]);
      assert.equal(dump.status, 0, dump.stderr);
      assert.deepEqual(writeImageV2(await parseDumpfile([Buffer.from(dump.stdout, 'latin1')], { strict: true }), hash).bytes, bytes);
    } else {
      // Every file kept outside names its object by its SHA-512 digest.
      assert.ok(bytes.includes(Buffer.from([0, 68, 0, 2])), 'a SHA-512 metacopy');
      assert.equal(bytes.includes(Buffer.from([0, 36, 0, 1])), false, 'no SHA-256 metacopy');
    }
    assert.deepEqual(await configRefs(repo, 'img'), { 'composefs.image': id }, 'composefs-oci IMAGE_REF_KEY');
    const listed = JSON.parse(veritree(['images', '--json', '--repo', repo]).stdout) as { imageId?: string }[];
    assert.equal(listed[0]?.imageId, id);
    assert.equal(veritree(['image', 'img', '--json', '--repo', repo]).stdout.includes('"written":false'), true, 'a second run writes nothing');
    // The copy's metacopy and redirect are the original's: shared, not inline.
    assert.match(debugImage(bytes), /# xattr #\d+\n[0-9a-f]{8} \(4 16 \d+\) trusted\."overlay\.redirect"/);
    const gc = veritree(['gc', '--repo', repo]);
    assert.equal(gc.status, 0, gc.stderr);
    const f = veritree(['fsck', '--repo', repo]);
    assert.equal(f.status, 0, f.stdout + f.stderr);
  });

  test(`V2 ${hash} repository: the image mounts and serves its files`, { skip: whyNoMount !== null ? `skipped: ${whyNoMount}` : false }, () => {
    assert.notEqual(id, '', 'the image was written');
    const mnt = join(root, `mnt-${hash}`);
    mkdirSync(mnt);
    const m = veritree(['mount', 'img', mnt, '--repo', repo]);
    assert.equal(m.status, 0, m.stderr);
    try {
      assert.equal(readFileSync(join(mnt, 'etc', 'hello'), 'utf8'), 'hi\n');
      assert.equal(readFileSync(join(mnt, 'usr', 'share', 'big.txt'), 'utf8'), BIG);
      assert.equal(readFileSync(join(mnt, 'usr', 'share', 'big-link.txt'), 'utf8'), BIG);
      assert.equal(readFileSync(join(mnt, 'usr', 'share', 'copy.txt'), 'utf8'), BIG, 'served through shared xattrs, after gc');
      assert.equal(statSync(join(mnt, 'usr', 'share', 'big-link.txt')).ino, statSync(join(mnt, 'usr', 'share', 'big.txt')).ino, 'one inode for both names');
      assert.equal(statSync(join(mnt, 'usr', 'share', 'big.txt')).nlink, 2);
      assert.equal(readlinkSync(join(mnt, 'etc', 'big')), '../usr/share/big.txt');
      assert.equal(readFileSync(join(mnt, 'etc', 'big'), 'utf8'), BIG);
    } finally {
      const u = veritree(['umount', mnt]);
      assert.equal(u.status, 0, u.stderr);
    }
    assert.equal(existsSync(join(mnt, 'etc')), false, 'unmounted');
    rmdirSync(mnt);
  });
}
