/**
 * Shell completion and the man page come from the CLI's own command definitions: every command
 * and option is offered, and the scripts are valid for their shells.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, hasTool, run, veritree } from './helpers.ts';

function complete(script: string, words: string[]): string[] {
  const line = words.map((w) => `'${w}'`).join(' ');
  const r = run('bash', ['-c', `${script}\nCOMP_WORDS=(${line}); COMP_CWORD=${words.length - 1}; _veritree; printf '%s\\n' "\${COMPREPLY[@]}"`]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).sort();
}

test('bash completion offers the commands, then each command\'s own options', () => {
  const r = veritree(['completion', 'bash']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(run('bash', ['-n', '-c', r.stdout]).status, 0, 'bash parses it');
  assert.deepEqual(complete(r.stdout, ['veritree', 'im']), ['image', 'images', 'import']);
  assert.deepEqual(complete(r.stdout, ['veritree', '--repo', '/r', 'export', 'ex', '--c']), ['--compression']);
  assert.ok(complete(r.stdout, ['veritree', 'import', '--']).includes('--force'));
  // The copy the build ships is the same script.
  assert.equal(readFileSync(join(ROOT, 'dist', 'completion', 'veritree.bash'), 'utf8'), r.stdout);
});

test('zsh and fish scripts name every command; a bad shell is a usage error', () => {
  const zsh = veritree(['completion', 'zsh']).stdout;
  const fish = veritree(['completion', 'fish']).stdout;
  for (const c of ['import', 'export', 'prune', 'ls', 'cat', 'diff', 'fsck', 'gc', 'mount']) {
    assert.match(zsh, new RegExp(`^ {4}'${c}:`, 'm'));
    assert.match(fish, new RegExp(`-a ${c} -d`));
  }
  if (hasTool('zsh')) assert.equal(run('zsh', ['-n', '-c', zsh]).status, 0);
  if (hasTool('fish')) assert.equal(run('fish', ['-n', '-c', fish]).status, 0);
  assert.equal(veritree(['completion', 'tcsh']).status, 2);
});

test('the man page is built with the package and documents every command', () => {
  const page = join(ROOT, 'dist', 'man', 'veritree.1');
  assert.ok(existsSync(page));
  const text = readFileSync(page, 'utf8');
  assert.match(text, /^\.TH VERITREE 1 /);
  for (const c of ['import', 'export', 'prune', 'checkout', 'completion']) assert.match(text, new RegExp(`^\\.B veritree ${c} `, 'm'));
  if (hasTool('groff')) {
    const g = run('groff', ['-man', '-ww', '-z', page]);
    assert.equal(g.status, 0);
    assert.equal(g.stderr, '', 'groff has no warning');
  }
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { man: string[]; files: string[] };
  assert.deepEqual(pkg.man, ['./dist/man/veritree.1']);
  assert.ok(pkg.files.includes('dist/man') && pkg.files.includes('dist/completion'));
});
