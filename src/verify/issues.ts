/**
 * What fsck reports: every problem with a stable kebab-case type, the path, and expected vs found
 * where that applies. fsck never stops at the first problem.
 * @module
 */

export const ISSUE_TYPES = [
  'object-digest-mismatch',
  'object-unreadable',
  'object-verity-missing',
  'object-invalid-name',
  'stray-tmp',
  'missing-object',
  'broken-symlink',
  'stream-not-symlink',
  'stream-corrupt',
  'stream-content-type',
  'json-digest-mismatch',
  'missing-stream',
  'layer-diff-id-mismatch',
  'tag-not-manifest',
  'image-misnamed',
  'image-corrupt',
] as const;

export type IssueType = (typeof ISSUE_TYPES)[number];

export interface StoreIssue {
  type: IssueType;
  path: string;
  detail: string;
  expected?: string;
  found?: string;
}
