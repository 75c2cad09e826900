/**
 * The end of an import of an image already whole in the store: the events it sends and when.
 * Its layers are reported present only once its tag is set, as for an imported image: a run
 * whose tag is taken meanwhile ends that image failed, with no layer reported done.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readlinkSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Repository } from '../src/store/repository.ts';
import type { ImportProgress } from '../src/index.ts';
import { cleanup, ROOT, tempDir } from './helpers.ts';

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

const SOURCE = `oci:${join(ROOT, 'example', 'oci')}:latest`;

test('an image already present: layer-done after its tag is set, none when the tag is taken meanwhile', async () => {
  const { importImages } = await import('../src/pipeline/import.ts');
  const d = tempDir();
  dirs.push(d);
  const repo = await Repository.init(join(d, 'repo'));
  const first = await importImages(repo, [SOURCE]);
  assert.ok(first.images[0]?.ok, 'the first import');
  const tagLink = join(repo.root, 'streams', 'refs', 'oci', 'latest');
  const mine = readlinkSync(tagLink);

  // Again, whole in the store: its layers are done, then the image.
  const events: ImportProgress[] = [];
  const again = await importImages(repo, [SOURCE], { onProgress: (e) => events.push(e) });
  assert.ok(again.images[0]?.ok);
  const kinds = events.map((e) => e.type);
  assert.deepEqual(kinds.filter((k) => k === 'layer-done').length, 2);
  assert.ok(kinds.lastIndexOf('layer-done') < kinds.indexOf('image-done'));

  // Another run gives out "latest" after this one checked it: the tag is not moved, the image
  // fails, and none of its layers is reported done (before the import's one end, the present
  // path reported them only once the tag was set).
  const other = `../../oci-manifest-sha256:${'e'.repeat(64)}`;
  const failing: ImportProgress[] = [];
  const report = await importImages(repo, [SOURCE], {
    onProgress: (e) => {
      failing.push(e);
      if (e.type === 'image') {
        unlinkSync(tagLink);
        symlinkSync(other, tagLink);
      }
    },
  });
  const r = report.images[0];
  assert.ok(r && !r.ok, 'the image fails');
  assert.equal(r.code, 'TAG_IN_USE', r.message);
  assert.equal(readlinkSync(tagLink), other, "the other run's tag is not moved");
  assert.notEqual(other, mine);
  assert.deepEqual(failing.map((e) => e.type), ['run', 'image', 'image-done']);
});
