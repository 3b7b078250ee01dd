// A deterministic in-memory file system for the simulator (node/storage/file-system.ts's
// interface), so the production DurableLog, its recovery, snapshot files and the not-voting
// marker run under disk faults. The simulator's PRNG drives every choice; the simulator's
// clock completes every data operation (write, fsync, directory fsync) after its latency.
//
// The model, per file: what a running process reads (the page cache) and what survives a
// crash (the media). A write lands in the cache when it completes; on the media too when the
// file is O_DSYNC; an fsync copies the cache to the media. Directory changes (create, link,
// unlink, rename) are durable after a directory fsync; a crash keeps a prefix of the rest.
// At a crash, each aligned 512-byte sector of an unsynced or unfinished write either made it
// or did not (torn writes), then the cache is dropped.
//
// Faults (each drawn per operation or injected by the simulator):
// - latency spikes;
// - EIO on a write, fsync or directory fsync: the write's bytes stay in the cache and never
//   reach the media (what Linux does after a failed writeback); ENOSPC on a write (nothing
//   written). The log fails; the replica must fail-stop.
// - a lost write: reported done, never on the media. Only one that a later write of the same
//   file follows (zeros where it was, before later records) is kept lost: a lost final write
//   reads exactly like a torn tail and no log can tell them apart (node/storage/README.md),
//   so it is made good at the crash instead of being injected outside the model.
// - a misdirected write: reported done, its bytes land 1-4 sectors before where they belong
//   (over acknowledged records) and the right place keeps its old bytes;
// - a flipped bit in stored data (flipBit()).
// The corrupting three are recorded (corruptions), so the checker knows whether a refusal to
// start (CorruptLogError) is the expected answer.
import { Prng } from './prng.js';
import { OPEN_FLAGS, type FileSystem, type StorageFile } from '../../node/storage/file-system.js';

export const SECTOR_BYTES = 512;

export interface SimDiskFaults {
  /** Latency of a data operation: 0.05 ms up to this; with spikeProbability up to 100 ms more. */
  latencyMsMax: number;
  spikeProbability: number;
  /** Per write, fsync or directory fsync. */
  ioErrorProbability: number;
  /** Per write. */
  noSpaceProbability: number;
  /** Per write that completes; only where the simulator allows corruption (see corruptionAllowed). */
  lostWriteProbability: number;
  misdirectedWriteProbability: number;
}

export const NO_DISK_FAULTS: SimDiskFaults = {
  latencyMsMax: 1,
  spikeProbability: 0,
  ioErrorProbability: 0,
  noSpaceProbability: 0,
  lostWriteProbability: 0,
  misdirectedWriteProbability: 0,
};

/** An error the simulated disk returned on purpose (the checker expects a fail-stop). */
export class SimIoError extends Error {
  constructor(
    readonly code: 'EIO' | 'ENOSPC',
    readonly path: string,
    operation: string,
  ) {
    super(`${code}: ${operation} ${path} (injected by the simulated disk)`);
  }
}

/** Whether `error` or any error in its cause chain was injected by a simulated disk. */
export function isInjectedIoError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    if (e instanceof SimIoError) return true;
  }
  return false;
}

export interface Corruption {
  kind: 'bit-flip' | 'lost-write' | 'misdirected-write';
  path: string;
  offset: number;
}

interface Inode {
  cache: Buffer;
  media: Buffer;
  /** Sectors of the cache that differ from the media and may still reach it (not poisoned). */
  dirty: Set<number>;
  /** Writes issued and not completed: at a crash, each of their sectors may have landed. */
  inflight: Set<{ position: number; bytes: Buffer }>;
  /** Lost writes not yet followed by a later write of this file (made good at a crash). */
  unrevealedLost: { position: number; bytes: Buffer }[];
}

interface DueOperation {
  atMs: number;
  seq: number;
  run: () => void;
}

type DirectoryChange = (names: Map<string, Inode>) => void;

export class SimFileSystem implements FileSystem {
  private names = new Map<string, Inode>();
  private mediaNames = new Map<string, Inode>();
  private readonly directories = new Set<string>();
  /** Directory changes since the last directory fsync, per directory, in order. */
  private pendingChanges = new Map<string, DirectoryChange[]>();
  private due: DueOperation[] = [];
  private seq = 0;
  /** Bumped at every crash: operations of an older life never complete. */
  private generation = 0;
  readonly corruptions: Corruption[] = [];
  readonly counters = {
    ioErrors: 0,
    noSpace: 0,
    lostWrites: 0,
    misdirectedWrites: 0,
    bitFlips: 0,
    tornSectorsLost: 0,
    spikes: 0,
  };
  /** Off in the simulator's liveness phase: no errors, no spikes (corruption is gated by corruptionAllowed). */
  faultsOn = true;
  /** The simulator decides whether a corrupting fault may hit this disk now (one lost disk per shard at a time). */
  corruptionAllowed: () => boolean = () => false;

  constructor(
    private readonly rng: Prng,
    private readonly now: () => number,
    readonly faults: SimDiskFaults,
    /** Called on every call and completion: the simulator drains the microtasks that follow. */
    private readonly touched: () => void,
  ) {}

  // ---- The simulator's side ----

  /** The file system for the process starting now (see SimProcessFileSystem). */
  forProcess(): SimProcessFileSystem {
    return new SimProcessFileSystem(this, this.generation);
  }

  /** When the next data operation completes (Infinity: none pending). */
  get nextDueMs(): number {
    return this.due.length > 0 ? this.due[0]!.atMs : Number.POSITIVE_INFINITY;
  }

  runNextDue(): void {
    const operation = this.due.shift()!;
    this.touched();
    operation.run();
  }

  /** Power cut: torn and unsynced writes per sector, a prefix of the directory changes, the cache dropped. */
  crash(): void {
    this.generation += 1;
    this.due = [];
    const inodes = new Set<Inode>([...this.names.values(), ...this.mediaNames.values()]);
    for (const inode of inodes) {
      for (const lost of inode.unrevealedLost) this.toMedia(inode, lost.position, lost.bytes);
      inode.unrevealedLost = [];
      for (const write of inode.inflight) {
        for (
          let sector = Math.floor(write.position / SECTOR_BYTES);
          sector * SECTOR_BYTES < write.position + write.bytes.length;
          sector += 1
        ) {
          if (!this.rng.chance(0.5)) {
            this.counters.tornSectorsLost += 1;
            continue;
          }
          const from = Math.max(sector * SECTOR_BYTES, write.position);
          const to = Math.min((sector + 1) * SECTOR_BYTES, write.position + write.bytes.length);
          this.toMedia(inode, from, write.bytes.subarray(from - write.position, to - write.position));
        }
      }
      inode.inflight.clear();
      // The file keeps the size its cache had (zeros where a lost sector was): one allocation, not one per sector.
      if (inode.dirty.size > 0 && inode.cache.length > inode.media.length) this.growMedia(inode, inode.cache.length);
      for (const sector of [...inode.dirty].sort((a, b) => a - b)) {
        if (!this.rng.chance(0.5)) {
          this.counters.tornSectorsLost += 1;
          continue;
        }
        const from = sector * SECTOR_BYTES;
        const to = Math.min(from + SECTOR_BYTES, inode.cache.length);
        if (to > from) this.toMedia(inode, from, inode.cache.subarray(from, to));
      }
      inode.dirty.clear();
    }
    for (const [, changes] of this.pendingChanges) {
      const kept = this.rng.int(0, changes.length + 1);
      for (const change of changes.slice(0, kept)) change(this.mediaNames);
    }
    this.pendingChanges.clear();
    this.names = new Map(this.mediaNames);
    for (const inode of new Set(this.names.values())) inode.cache = Buffer.from(inode.media);
  }

  /** The data dir is gone (a wiped disk, a lost volume). */
  wipe(): void {
    this.crash();
    this.names.clear();
    this.mediaNames.clear();
    this.corruptions.length = 0;
  }

  /** Flips one bit of stored data in a log segment or snapshot file; false when there is none. */
  flipBit(): boolean {
    const candidates = [...this.mediaNames.entries()].filter(
      ([path, inode]) => /\.(seg|snap)$/.test(path) && inode.media.length > 0 && this.names.get(path) === inode,
    );
    if (candidates.length === 0) return false;
    const [path, inode] = this.rng.pick(candidates.sort(([a], [b]) => (a < b ? -1 : 1)));
    const offset = this.rng.int(0, inode.media.length);
    const bit = 1 << this.rng.int(0, 8);
    inode.media[offset]! ^= bit;
    if (offset < inode.cache.length) inode.cache[offset]! ^= bit;
    this.counters.bitFlips += 1;
    this.corruptions.push({ kind: 'bit-flip', path, offset });
    return true;
  }

  /** Names of the files that exist, for traces. */
  describe(): string {
    return [...this.names.entries()]
      .map(([path, inode]) => `${path.split('/').at(-1)}:${inode.media.length}`)
      .sort()
      .join(' ');
  }

  // ---- FileSystem ----

  async mkdirRecursive(path: string): Promise<string | undefined> {
    this.touched();
    const parts = path.split('/').filter(Boolean);
    let first: string | undefined;
    for (let i = 1; i <= parts.length; i += 1) {
      const dir = `/${parts.slice(0, i).join('/')}`;
      if (!this.directories.has(dir)) {
        this.directories.add(dir);
        first ??= dir;
      }
    }
    return first;
  }

  async readdir(path: string): Promise<string[]> {
    this.touched();
    const prefix = `${path}/`;
    return [...this.names.keys()]
      .filter((name) => name.startsWith(prefix) && !name.slice(prefix.length).includes('/'))
      .map((name) => name.slice(prefix.length))
      .sort();
  }

  async readFile(path: string): Promise<Buffer> {
    this.touched();
    const inode = this.names.get(path);
    if (!inode) throw enoent(path);
    return Buffer.from(inode.cache);
  }

  async exists(path: string): Promise<boolean> {
    this.touched();
    return this.names.has(path);
  }

  async createFile(path: string, data: string): Promise<void> {
    this.touched();
    if (this.names.has(path)) throw Object.assign(new Error(`EEXIST: ${path}`), { code: 'EEXIST' });
    const inode = this.newInode();
    this.change(path, (names) => names.set(path, inode));
    this.cacheWrite(inode, 0, Buffer.from(data));
  }

  async open(path: string, flags: number | 'r' | 'r+' | 'w'): Promise<StorageFile> {
    this.touched();
    const numeric =
      typeof flags === 'number'
        ? flags
        : flags === 'w'
          ? OPEN_FLAGS.O_WRONLY | OPEN_FLAGS.O_CREAT | OPEN_FLAGS.O_TRUNC
          : 0;
    let inode = this.names.get(path);
    if (inode && numeric & OPEN_FLAGS.O_EXCL && numeric & OPEN_FLAGS.O_CREAT)
      throw Object.assign(new Error(`EEXIST: ${path}`), { code: 'EEXIST' });
    if (!inode) {
      if (!(numeric & OPEN_FLAGS.O_CREAT)) throw enoent(path);
      const created = this.newInode();
      inode = created;
      this.change(path, (names) => names.set(path, created));
    } else if (numeric & OPEN_FLAGS.O_TRUNC) {
      inode.cache = Buffer.alloc(0);
      inode.dirty.add(0);
    }
    return new SimFile(this, path, inode, (numeric & OPEN_FLAGS.O_DSYNC) !== 0, this.generation);
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    this.touched();
    const inode = this.names.get(existingPath);
    if (!inode) throw enoent(existingPath);
    if (this.names.has(newPath)) throw Object.assign(new Error(`EEXIST: ${newPath}`), { code: 'EEXIST' });
    this.change(newPath, (names) => names.set(newPath, inode));
  }

  async unlink(path: string): Promise<void> {
    this.touched();
    if (!this.names.has(path)) throw enoent(path);
    this.change(path, (names) => names.delete(path));
  }

  async remove(path: string): Promise<void> {
    if (this.names.has(path)) await this.unlink(path);
  }

  async rename(from: string, to: string): Promise<void> {
    this.touched();
    const inode = this.names.get(from);
    if (!inode) throw enoent(from);
    this.change(from, (names) => {
      const moved = names.get(from);
      if (moved === undefined) return;
      names.delete(from);
      names.set(to, moved);
    });
  }

  syncDirectory(directory: string): Promise<void> {
    this.touched();
    return this.operation(`fsync directory ${directory}`, directory, true, false, () => {
      const changes = this.pendingChanges.get(directory) ?? [];
      this.pendingChanges.delete(directory);
      for (const change of changes) change(this.mediaNames);
    });
  }

  nextTurn(): Promise<void> {
    this.touched();
    return Promise.resolve();
  }

  // ---- For SimFile ----

  /** Schedules a data operation; it completes (or fails) when the simulator's clock reaches it. */
  operation(
    what: string,
    path: string,
    mayFail: boolean,
    mayFillUp: boolean,
    complete: () => void,
    onError?: () => void,
  ): Promise<void> {
    const generation = this.generation;
    let latency = 0.05 + this.rng.next() * this.faults.latencyMsMax;
    if (this.faultsOn && this.rng.chance(this.faults.spikeProbability)) {
      latency += this.rng.next() * 100;
      this.counters.spikes += 1;
    }
    const fails = this.faultsOn && mayFail && this.rng.chance(this.faults.ioErrorProbability);
    const full = this.faultsOn && !fails && mayFillUp && this.rng.chance(this.faults.noSpaceProbability);
    return new Promise<void>((resolve, reject) => {
      const entry: DueOperation = {
        atMs: this.now() + latency,
        seq: this.seq++,
        run: () => {
          if (generation !== this.generation) return; // the process died: never completes
          if (fails || full) {
            if (fails) {
              this.counters.ioErrors += 1;
              onError?.();
            } else this.counters.noSpace += 1;
            reject(new SimIoError(fails ? 'EIO' : 'ENOSPC', path, what));
            return;
          }
          complete();
          resolve();
        },
      };
      let lo = 0;
      let hi = this.due.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const other = this.due[mid]!;
        if (other.atMs < entry.atMs || (other.atMs === entry.atMs && other.seq < entry.seq)) lo = mid + 1;
        else hi = mid;
      }
      this.due.splice(lo, 0, entry);
    });
  }

  isCurrent(generation: number): boolean {
    return generation === this.generation;
  }

  markTouched(): void {
    this.touched();
  }

  /** A completed write: into the cache; onto the media too when O_DSYNC (or a lost or misdirected write instead). */
  completeWrite(path: string, inode: Inode, position: number, bytes: Buffer, dsync: boolean): void {
    this.cacheWrite(inode, position, bytes);
    if (!dsync) return;
    for (const sector of sectorsOf(position, bytes.length)) inode.dirty.delete(sector);
    // A later write reveals every earlier lost write of this file (zeros before later records).
    inode.unrevealedLost = inode.unrevealedLost.filter((lost) => lost.position >= position);
    const corrupting =
      this.faults.lostWriteProbability + this.faults.misdirectedWriteProbability > 0 && this.corruptionAllowed();
    if (corrupting && this.rng.chance(this.faults.lostWriteProbability)) {
      this.counters.lostWrites += 1;
      this.corruptions.push({ kind: 'lost-write', path, offset: position });
      inode.unrevealedLost.push({ position, bytes: Buffer.from(bytes) });
      return;
    }
    if (corrupting && position >= SECTOR_BYTES && this.rng.chance(this.faults.misdirectedWriteProbability)) {
      const shift = SECTOR_BYTES * this.rng.int(1, Math.min(4, Math.floor(position / SECTOR_BYTES)) + 1);
      this.counters.misdirectedWrites += 1;
      this.corruptions.push({ kind: 'misdirected-write', path, offset: position - shift });
      this.toMedia(inode, position - shift, bytes);
      return;
    }
    this.toMedia(inode, position, bytes);
  }

  /** A completed fsync: the cache's dirty sectors reach the media. */
  completeSync(inode: Inode): void {
    if (inode.media.length < inode.cache.length) this.growMedia(inode, inode.cache.length);
    for (const sector of inode.dirty) {
      const from = sector * SECTOR_BYTES;
      const to = Math.min(from + SECTOR_BYTES, inode.cache.length);
      if (to > from) this.toMedia(inode, from, inode.cache.subarray(from, to));
    }
    inode.dirty.clear();
    // The size is durable too: shorter after a truncate, longer (zeros where writeback failed) after growth.
    if (inode.media.length > inode.cache.length) inode.media = Buffer.from(inode.media.subarray(0, inode.cache.length));
    else if (inode.media.length < inode.cache.length)
      this.toMedia(inode, inode.media.length, Buffer.alloc(inode.cache.length - inode.media.length));
  }

  /** A failed fsync (or O_DSYNC write): the dirty pages are dropped from writeback, never reaching the media. */
  poison(inode: Inode): void {
    inode.dirty.clear();
  }

  cacheWrite(inode: Inode, position: number, bytes: Buffer): void {
    const end = position + bytes.length;
    if (end > inode.cache.length) {
      const grown = Buffer.alloc(end);
      inode.cache.copy(grown);
      inode.cache = grown;
    }
    bytes.copy(inode.cache, position);
    for (const sector of sectorsOf(position, bytes.length)) inode.dirty.add(sector);
  }

  truncate(inode: Inode, length: number): void {
    if (length < inode.cache.length) inode.cache = Buffer.from(inode.cache.subarray(0, length));
    else this.cacheWrite(inode, inode.cache.length, Buffer.alloc(length - inode.cache.length));
    inode.dirty.add(Math.floor(length / SECTOR_BYTES));
  }

  private toMedia(inode: Inode, position: number, bytes: Buffer): void {
    const end = position + bytes.length;
    if (end > inode.media.length) this.growMedia(inode, end);
    bytes.copy(inode.media, position);
  }

  private growMedia(inode: Inode, length: number): void {
    const grown = Buffer.alloc(length);
    inode.media.copy(grown);
    inode.media = grown;
  }

  private newInode(): Inode {
    return {
      cache: Buffer.alloc(0),
      media: Buffer.alloc(0),
      dirty: new Set(),
      inflight: new Set(),
      unrevealedLost: [],
    };
  }

  /** A directory change: visible at once, durable after the directory's fsync. */
  private change(path: string, apply: DirectoryChange): void {
    apply(this.names);
    const directory = path.slice(0, path.lastIndexOf('/')) || '/';
    let list = this.pendingChanges.get(directory);
    if (!list) this.pendingChanges.set(directory, (list = []));
    list.push(apply);
  }
}

/**
 * The file system as one process life sees it: after a crash, whatever the dead process still
 * had in flight (a promise chain resuming) does nothing and never completes.
 */
export class SimProcessFileSystem implements FileSystem {
  constructor(
    private readonly fs: SimFileSystem,
    private readonly generation: number,
  ) {}

  private live<T>(call: () => Promise<T>): Promise<T> {
    return this.fs.isCurrent(this.generation) ? call() : new Promise<T>(() => undefined);
  }

  mkdirRecursive(path: string): Promise<string | undefined> {
    return this.live(() => this.fs.mkdirRecursive(path));
  }
  readdir(path: string): Promise<string[]> {
    return this.live(() => this.fs.readdir(path));
  }
  readFile(path: string): Promise<Buffer> {
    return this.live(() => this.fs.readFile(path));
  }
  open(path: string, flags: number | 'r' | 'r+' | 'w'): Promise<StorageFile> {
    return this.live(() => this.fs.open(path, flags));
  }
  createFile(path: string, data: string): Promise<void> {
    return this.live(() => this.fs.createFile(path, data));
  }
  exists(path: string): Promise<boolean> {
    return this.live(() => this.fs.exists(path));
  }
  link(existingPath: string, newPath: string): Promise<void> {
    return this.live(() => this.fs.link(existingPath, newPath));
  }
  unlink(path: string): Promise<void> {
    return this.live(() => this.fs.unlink(path));
  }
  remove(path: string): Promise<void> {
    return this.live(() => this.fs.remove(path));
  }
  rename(from: string, to: string): Promise<void> {
    return this.live(() => this.fs.rename(from, to));
  }
  syncDirectory(directory: string): Promise<void> {
    return this.live(() => this.fs.syncDirectory(directory));
  }
  nextTurn(): Promise<void> {
    return this.live(() => this.fs.nextTurn());
  }
}

class SimFile implements StorageFile {
  private closed = false;

  constructor(
    private readonly fs: SimFileSystem,
    private readonly path: string,
    private readonly inode: Inode,
    private readonly dsync: boolean,
    private readonly generation: number,
  ) {}

  write(bytes: Buffer, offset: number, length: number, position: number): Promise<number> {
    this.usable();
    const copy = Buffer.from(bytes.subarray(offset, offset + length));
    const inflight = { position, bytes: copy };
    if (this.dsync) this.inode.inflight.add(inflight);
    return this.fs
      .operation(
        `write ${length} bytes at ${position}`,
        this.path,
        this.dsync,
        true,
        () => {
          this.inode.inflight.delete(inflight);
          this.fs.completeWrite(this.path, this.inode, position, copy, this.dsync);
        },
        () => {
          // EIO: the bytes are in the cache, but writeback failed and dropped them.
          this.inode.inflight.delete(inflight);
          this.fs.cacheWrite(this.inode, position, copy);
          this.fs.poison(this.inode);
        },
      )
      .then(() => length);
  }

  writeNow(bytes: Buffer, offset: number, length: number, position: number): number {
    this.usable();
    this.fs.markTouched();
    this.fs.completeWrite(
      this.path,
      this.inode,
      position,
      Buffer.from(bytes.subarray(offset, offset + length)),
      this.dsync,
    );
    return length;
  }

  sync(): Promise<void> {
    this.usable();
    return this.fs.operation(
      'fsync',
      this.path,
      true,
      false,
      () => this.fs.completeSync(this.inode),
      () => this.fs.poison(this.inode),
    );
  }

  datasync(): Promise<void> {
    return this.sync();
  }

  async truncate(length: number): Promise<void> {
    this.usable();
    this.fs.markTouched();
    this.fs.truncate(this.inode, length);
  }

  async size(): Promise<number> {
    this.usable();
    this.fs.markTouched();
    return this.inode.cache.length;
  }

  async close(): Promise<void> {
    this.fs.markTouched();
    this.closed = true;
  }

  private usable(): void {
    if (this.closed) throw Object.assign(new Error(`EBADF: ${this.path} is closed`), { code: 'EBADF' });
    // A dead process does no I/O: its writes must not reach the disk of its successor.
    if (!this.fs.isCurrent(this.generation)) throw new StaleProcessError(this.path);
  }
}

/** I/O of a process that has crashed (a promise chain of the dead process resumed): it never happens. */
export class StaleProcessError extends Error {
  constructor(path: string) {
    super(`${path}: used by a process that has crashed`);
  }
}

function sectorsOf(position: number, length: number): number[] {
  const sectors: number[] = [];
  for (let sector = Math.floor(position / SECTOR_BYTES); sector * SECTOR_BYTES < position + length; sector += 1)
    sectors.push(sector);
  return sectors;
}

function enoent(path: string): Error {
  return Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
}
