// Fitting the broker's descriptor-hungry limits (client connections, storage file handles) under
// the process's open-file limit: a process that runs out of descriptors can die inside the runtime
// (Deno panics), so the limits are sized to leave headroom rather than trusted to fail cleanly.

/** Descriptors kept for everything else: the runtime, listeners, metrics, cluster links. */
export const OPEN_FILES_RESERVED = 64;
/** Neither limit is sized below this, however low the open-file limit. */
const FITTED_MIN = 8;

/** The limits that cost one descriptor each. */
export interface DescriptorLimits {
  connectionsMax: number;
  fileHandlesMax: number;
}

/** Limits sized to an open-file limit, and the warning to log when they had to shrink. */
export interface FittedLimits extends DescriptorLimits {
  /** One line for the operator, or null when the settings fit as given. */
  warning: string | null;
}

/**
 * Sizes `limits` to fit `openFilesMax` (the soft RLIMIT_NOFILE) with OPEN_FILES_RESERVED to
 * spare. What fits is left alone; otherwise the room is shared, each side keeping what it asked
 * for if that is less than half.
 */
export function fitToOpenFiles(limits: DescriptorLimits, openFilesMax: number): FittedLimits {
  const need = limits.connectionsMax + limits.fileHandlesMax + OPEN_FILES_RESERVED;
  if (need <= openFilesMax) return { ...limits, warning: null };
  const room = Math.max(2 * FITTED_MIN, openFilesMax - OPEN_FILES_RESERVED);
  const half = Math.floor(room / 2);
  let connectionsMax: number;
  let fileHandlesMax: number;
  if (limits.connectionsMax <= half) {
    connectionsMax = limits.connectionsMax;
    fileHandlesMax = Math.min(limits.fileHandlesMax, room - connectionsMax);
  } else if (limits.fileHandlesMax <= half) {
    fileHandlesMax = limits.fileHandlesMax;
    connectionsMax = Math.min(limits.connectionsMax, room - fileHandlesMax);
  } else {
    connectionsMax = half;
    fileHandlesMax = room - half;
  }
  connectionsMax = Math.max(FITTED_MIN, connectionsMax);
  fileHandlesMax = Math.max(FITTED_MIN, fileHandlesMax);
  const warning = `The open-file limit (ulimit -n) is ${openFilesMax}, below the ${need} that ` +
    `connectionsMax (${limits.connectionsMax}) + fileHandlesMax (${limits.fileHandlesMax}) + ` +
    `${OPEN_FILES_RESERVED} reserved need; using connectionsMax ${connectionsMax} and ` +
    `fileHandlesMax ${fileHandlesMax} so the broker cannot run out of descriptors ` +
    `(raise the limit, e.g. LimitNOFILE in systemd, to use the settings as given)`;
  return { connectionsMax, fileHandlesMax, warning };
}

/**
 * The soft "Max open files" of a /proc/<pid>/limits text, or null if it has none or it is
 * unlimited.
 */
export function parseOpenFilesLimit(procLimits: string): number | null {
  const m = /^Max open files\s+(\S+)/m.exec(procLimits);
  if (m === null || !/^\d+$/.test(m[1] as string)) return null;
  return Number(m[1]);
}
