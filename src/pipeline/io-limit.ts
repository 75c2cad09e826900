/**
 * The default I/O limit: how many workers may write to the store's device at once. Hashing is
 * CPU work and scales with cores; writing is I/O work, and a 64-core host with one spinning disk
 * must not drown it in 64 writers. The device kind is read from sysfs (Linux); the figures are
 * documented in the README and overridable with --io-limit.
 * @module
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

export const IO_LIMITS = {
  /** One seek head: more than two writers only adds seeks. */
  rotational: 2,
  /** SATA/SAS SSDs: about 32 queued commands (NCQ). */
  ssd: 16,
  /** NVMe: deep queues; the CPU is the limit long before the device. */
  nvme: 64,
  /** Virtio and Xen disks say "rotational" whatever backs them (mostly SSDs): not evidence either way. */
  virtual: 32,
  /** tmpfs, overlay, network or unknown: no device to protect, only a sane bound. */
  unknown: 32,
} as const;

export type DeviceKind = keyof typeof IO_LIMITS;

export interface DeviceInfo {
  kind: DeviceKind;
  /** The block device's name (sda, nvme0n1, vda) when one was found. */
  device: string | null;
}

async function nearestExisting(path: string): Promise<string> {
  let p = path;
  for (;;) {
    // Any error means "not a usable path here": the walk goes up. The answer only picks a
    // default I/O limit, so nothing is lost by taking a parent's device.
    if (await stat(p).catch(() => null)) return p;
    const up = dirname(p);
    if (up === p) return p;
    p = up;
  }
}

/** Which kind of device holds `path` (or its nearest existing parent). Never throws. */
export async function detectDevice(path: string): Promise<DeviceInfo> {
  try {
    const st = await stat(await nearestExisting(path));
    const major = Math.floor(st.dev / 256) & 0xfff;
    const minor = (st.dev & 0xff) | ((st.dev >> 12) & 0xfff00);
    let sys = await realpath(`/sys/dev/block/${major}:${minor}`);
    // A partition has no queue/ of its own; its parent device does (any error reads as "none").
    if (!(await stat(`${sys}/queue`).catch(() => null))) sys = dirname(sys);
    const device = basename(sys);
    const rotational = (await readFile(`${sys}/queue/rotational`, 'utf8')).trim() === '1';
    if (device.startsWith('nvme')) return { kind: 'nvme', device };
    if (/^x?vd[a-z]/.test(device)) return { kind: 'virtual', device };
    return { kind: rotational ? 'rotational' : 'ssd', device };
  } catch {
    return { kind: 'unknown', device: null };
  }
}

export async function defaultIoLimit(path: string): Promise<number> {
  return IO_LIMITS[(await detectDevice(path)).kind];
}
