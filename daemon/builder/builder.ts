// `strata build`: runs a Dockerfile step by step. Each step that changes files runs in a
// temporary union mount of the current layer chain (RUN through runc, COPY/ADD with fs
// calls) and its upper dir becomes the step's layer; the other steps change the config
// and add a history entry with an empty layer.
//
// Cache: a step's key is sha256 of the parent layer id, the config in force, the build
// args in scope, the step's text and (COPY/ADD) a checksum of the sources' names, modes
// and contents. The build_cache table maps key -> layer id (null for config-only steps);
// a last entry maps the whole build's key -> the image it produced, so a fully cached
// rebuild gives back the same image id. After the first miss nothing is looked up.
//
// One class over ~500 lines on purpose: the steps (FROM, RUN, COPY/ADD, config-only) all read and
// change one build's state (the stage, the cache key chain, the abort signal, the output), which
// the methods share through `this`; Dockerfile parsing, context files and the upload are their
// own modules (dockerfile.ts, context.ts, from-upload.ts).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import { extractLayer } from '../archive';
import type { ImageConfig } from '../model/types';

/** What to build: `context` is the daemon's private copy of the context the client sent. */
export interface BuildSpec {
  context: string;
  /** Path of the Dockerfile inside the context (default "Dockerfile"). */
  dockerfile?: string;
  /** How messages name the Dockerfile (default: its path in the context). */
  dockerfileName?: string;
  tags?: string[];
  noCache?: boolean;
  buildArgs?: Record<string, string>;
  network?: string;
}
import type { ProgressReporter } from '../model/progress';
import { noProgress } from '../model/progress';
import { canonicalRef } from '../model/validate';
import type { ImageService } from '../images/images';
import { emptyConfig } from '../images/oci-config';
import type { LayerStore } from '../layers/layer-store';
import type { Logger } from '../log';
import { clearStale, type MountManager } from '../mounts/mount-manager';
import type { Store } from '../store';
import type { HistoryRecord } from '../store/types';
import type { StorageRoot } from '../root/storage-root';
import { mergeEnv, processEnv, resolveUser, UserError, writeBundle } from '../runtime/spec';
import { runcDelete, runcRun } from '../runtime/runc';
import { checksumSources, cleanRel, copyTree, expandSources, Ignore, mkdirInRoot, resolveInRoot, sourceEntries, sourcesSize, type Owner } from './context';
import { DockerfileError, parseDockerfile, parseKeyValuePairs, processWord, processWords, type Instruction } from './dockerfile';

export interface BuildDeps {
  root: StorageRoot;
  store: Store;
  images: ImageService;
  layers: LayerStore;
  mounts: MountManager;
  log: Logger;
}

/** A build that failed: `code` is the failing command's exit code (1 for other errors). */
export class BuildFailure extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

interface Stage {
  config: ImageConfig;
  layers: string[];
  history: HistoryRecord[];
  base: string | null;
  /** Declared ARGs in scope and their values (undefined: declared without a value). */
  args: Map<string, string | undefined>;
  cmdSet: boolean;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

function cloneConfig(c: ImageConfig): ImageConfig {
  return JSON.parse(JSON.stringify(c)) as ImageConfig;
}

function envValue(env: string[], name: string): string | undefined {
  for (let i = env.length - 1; i >= 0; i--) {
    if (env[i].startsWith(name + '=')) return env[i].slice(name.length + 1);
  }
  return undefined;
}

function isUrl(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
}

function archiveKind(file: string): 'tar' | 'gzip' | 'bzip2' | 'xz' | null {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const b = Buffer.alloc(512);
    const n = fs.readSync(fd, b, 0, 512, 0);
    if (n >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (n >= 3 && b.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
    if (n >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    if (n >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
    return null;
  } catch {
    return null;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export class Builder {
  private readonly out: (text: string) => void;
  /** "Step N/M" of the step running: the id of its byte progress. */
  private stepId = '';

  constructor(
    private readonly d: BuildDeps,
    private readonly req: BuildSpec,
    out: (text: string) => void,
    private readonly abort: AbortSignal,
    /** Byte progress of COPY/ADD and of each step's layer commit. */
    private readonly progress: ProgressReporter = noProgress,
  ) {
    this.out = out;
  }

  private say(line: string): void {
    this.out(line.endsWith('\n') ? line : line + '\n');
  }

  async run(): Promise<{ id: string; tags: string[] }> {
    const req = this.req;
    const tags = (req.tags ?? []).map((t) => canonicalRef(t));
    const ctx = req.context;
    const dfRel = cleanRel(req.dockerfile || 'Dockerfile', 'Dockerfile');
    const dfName = req.dockerfileName || dfRel;
    let text: string;
    try {
      text = fs.readFileSync(resolveInRoot(ctx, dfRel), 'utf8');
    } catch {
      throw new BuildFailure(`cannot read Dockerfile ${dfName}: no such file in the build context`, 1);
    }
    const steps = parseDockerfile(text, dfName);
    const ignore = Ignore.load(ctx);
    const buildArgs = req.buildArgs ?? {};
    const usedArgs = new Set<string>();
    const globalArgs = new Map<string, string | undefined>();
    let stage: Stage | undefined;
    let missed = req.noCache === true;
    let chainKey = '';

    for (let n = 0; n < steps.length; n++) {
      const ins = steps[n];
      if (this.abort.aborted) throw new BuildFailure('build cancelled', 1);
      this.stepId = `Step ${n + 1}/${steps.length}`;
      this.say(`${this.stepId} : ${ins.original}`);
      const at = (msg: string) => `${dfName}:${ins.line}: ${msg}`;
      try {
        if (ins.keyword === 'FROM') {
          stage = this.from(ins, globalArgs);
          chainKey = sha256(`from\0${stage.base ?? 'scratch'}`);
          continue;
        }
        if (ins.keyword === 'ARG') {
          const scope = stage ? stage.args : globalArgs;
          const vars = stage ? this.vars(stage) : (k: string) => globalArgs.get(k);
          for (const [name, def] of parseKeyValuePairs(ins.rest, vars, 'ARG')) {
            usedArgs.add(name);
            let v: string | undefined = def === '\u0000' ? undefined : def;
            if (stage && v === undefined && globalArgs.has(name)) v = globalArgs.get(name);
            if (Object.prototype.hasOwnProperty.call(buildArgs, name)) v = buildArgs[name];
            scope.set(name, v);
          }
          continue;
        }
        if (!stage) throw new DockerfileError(at(`${ins.keyword} before FROM`));
        const r = await this.step(stage, ins, ctx, ignore, missed, dfName);
        if (!r.hit) missed = true;
        chainKey = sha256(`${chainKey}\0${r.key}`);
      } catch (err) {
        if (err instanceof DockerfileError || err instanceof UserError) {
          const m = err.message;
          throw new BuildFailure(m.startsWith(dfName + ':') ? m : at(m), 1);
        }
        throw err;
      }
    }
    if (!stage) throw new BuildFailure(`${dfName}: no FROM instruction`, 1);
    const unused = Object.keys(buildArgs).filter((k) => !usedArgs.has(k));
    if (unused.length) this.say(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed`);

    const finalKey = sha256(`image\0${chainKey}`);
    let id: string | undefined;
    if (!missed) {
      const row = this.d.store.buildCache.get(finalKey);
      if (row?.imageId && this.d.store.images.get(row.imageId)) id = row.imageId;
    }
    if (id === undefined) {
      id = this.d.images.commitImage({ config: stage.config, layers: stage.layers, history: stage.history, parent: stage.base });
      this.d.store.buildCache.put(finalKey, stage.layers[stage.layers.length - 1] ?? null, id);
    }
    for (const t of tags) this.d.store.images.tag(t, id);
    this.say(`Successfully built ${short(id)}`);
    for (const t of tags) this.say(`Successfully tagged ${t}`);
    return { id, tags };
  }

  private vars(stage: Stage): (k: string) => string | undefined {
    return (k) => envValue(stage.config.env, k) ?? stage.args.get(k);
  }

  private from(ins: Instruction, globalArgs: Map<string, string | undefined>): Stage {
    const words = processWords(ins.rest, (k) => globalArgs.get(k));
    if (words.length !== 1 && !(words.length === 3 && words[1].toLowerCase() === 'as')) {
      throw new DockerfileError('FROM requires either one or three arguments: FROM IMAGE [AS NAME]');
    }
    if (ins.flags.platform !== undefined) this.say('[Warning] FROM --platform is ignored');
    const ref = words[0];
    if (ref === 'scratch') {
      const config = emptyConfig();
      this.say(' ---> scratch');
      return { config, layers: [], history: [], base: null, args: new Map(), cmdSet: false };
    }
    const img = this.d.images.resolve(ref);
    this.say(` ---> ${short(img.id)}`);
    return {
      config: cloneConfig(img.config),
      layers: this.d.images.chain(img.id).map((l) => l.id),
      history: img.history.map((h) => ({ ...h })),
      base: img.id,
      args: new Map(),
      cmdSet: false,
    };
  }

  /** Build args in scope that RUN sees as env (those not shadowed by ENV). */
  private argEnv(stage: Stage): string[] {
    const out: string[] = [];
    for (const [k, v] of stage.args) if (v !== undefined && envValue(stage.config.env, k) === undefined) out.push(`${k}=${v}`);
    return out;
  }

  private async step(stage: Stage, ins: Instruction, ctx: string, ignore: Ignore, missed: boolean, dfName: string): Promise<{ key: string; hit: boolean }> {
    const vars = this.vars(stage);
    const kw = ins.keyword;
    const cfg = stage.config;
    const parent = stage.layers[stage.layers.length - 1] ?? null;
    const keyOf = (createdBy: string, sum = '') =>
      sha256(JSON.stringify({ v: 1, parent, config: cfg, args: [...stage.args].filter(([, v]) => v !== undefined), createdBy, sum }));

    // Config-only steps.
    const configStep = (createdBy: string, apply: () => void): { key: string; hit: boolean } => {
      const key = keyOf(createdBy);
      const row = missed ? undefined : this.d.store.buildCache.get(key);
      apply();
      if (row) this.say(' ---> Using cache');
      else this.d.store.buildCache.put(key, null, null);
      stage.history.push({ created: row?.created ?? new Date().toISOString(), createdBy, comment: '', emptyLayer: true, size: 0 });
      return { key, hit: row !== undefined };
    };

    switch (kw) {
      case 'ENV': {
        const pairs = parseKeyValuePairs(ins.rest, vars, 'ENV');
        return configStep(`ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`, () => {
          cfg.env = mergeEnv(cfg.env, pairs.map(([k, v]) => `${k}=${v}`));
        });
      }
      case 'LABEL': {
        const pairs = parseKeyValuePairs(ins.rest, vars, 'LABEL');
        return configStep(`LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`, () => {
          for (const [k, v] of pairs) cfg.labels[k] = v;
        });
      }
      case 'MAINTAINER': {
        const who = ins.rest;
        return configStep(`MAINTAINER ${who}`, () => {
          cfg.labels['org.opencontainers.image.authors'] = who;
        });
      }
      case 'WORKDIR': {
        const dir = processWord(ins.rest, vars);
        const resolved = path.posix.resolve(cfg.workingDir || '/', dir);
        return configStep(`WORKDIR ${resolved}`, () => {
          cfg.workingDir = resolved;
        });
      }
      case 'USER': {
        const user = processWord(ins.rest, vars);
        return configStep(`USER ${user}`, () => {
          cfg.user = user;
        });
      }
      case 'CMD':
      case 'ENTRYPOINT': {
        const argv = ins.json ?? [...(cfg.shell ?? ['/bin/sh', '-c']), ins.rest];
        return configStep(`${kw} ${JSON.stringify(argv)}`, () => {
          if (kw === 'CMD') {
            cfg.cmd = argv;
            stage.cmdSet = true;
          } else {
            cfg.entrypoint = argv;
            if (!stage.cmdSet) cfg.cmd = null;
          }
        });
      }
      case 'EXPOSE': {
        const ports = processWords(ins.rest, vars).map((p) => (p.includes('/') ? p.toLowerCase() : `${p}/tcp`));
        for (const p of ports) if (!/^\d+(-\d+)?\/(tcp|udp|sctp)$/.test(p)) throw new DockerfileError(`EXPOSE: invalid port "${p}"`);
        return configStep(`EXPOSE ${ports.join(' ')}`, () => {
          cfg.exposedPorts = [...new Set([...(cfg.exposedPorts ?? []), ...ports])];
        });
      }
      case 'VOLUME': {
        const vols = (ins.json ?? processWords(ins.rest, vars)).map((v) => processWord(v, vars));
        for (const v of vols) if (v === '') throw new DockerfileError('VOLUME specified can not be an empty string');
        return configStep(`VOLUME ${JSON.stringify(vols)}`, () => {
          cfg.volumes = [...new Set([...(cfg.volumes ?? []), ...vols])];
        });
      }
      case 'SHELL': {
        if (!ins.json || ins.json.length === 0) throw new DockerfileError('SHELL requires the arguments to be in JSON form: SHELL ["executable", "parameters"]');
        const sh = ins.json;
        return configStep(`SHELL ${JSON.stringify(sh)}`, () => {
          cfg.shell = sh;
        });
      }
      case 'STOPSIGNAL':
      case 'HEALTHCHECK':
      case 'ONBUILD':
        this.say(`[Warning] ${kw} is recorded in the history only`);
        return configStep(`${kw} ${ins.rest}`, () => undefined);
      case 'RUN':
        return this.runStep(stage, ins, missed, keyOf);
      case 'COPY':
      case 'ADD':
        return this.copyStep(stage, ins, ctx, ignore, missed, keyOf, dfName);
    }
    throw new DockerfileError(`unknown instruction: ${kw}`);
  }

  /** Looks a layer step up in the cache; on a hit the stage moves on and true is returned. */
  private cached(stage: Stage, key: string, createdBy: string, missed: boolean): boolean {
    if (missed) return false;
    const row = this.d.store.buildCache.get(key);
    if (!row?.layerId) return false;
    const layer = this.d.store.layers.get(row.layerId);
    if (!layer || layer.state !== 'ready') return false;
    this.say(' ---> Using cache');
    this.say(` ---> ${short(layer.id)}`);
    stage.layers.push(layer.id);
    stage.history.push({ created: row.created, createdBy, comment: '', emptyLayer: false, size: layer.size });
    return true;
  }

  private async runStep(stage: Stage, ins: Instruction, missed: boolean, keyOf: (c: string, s?: string) => string): Promise<{ key: string; hit: boolean }> {
    const cfg = stage.config;
    if (ins.flags.network !== undefined || ins.flags.mount !== undefined) throw new DockerfileError('RUN --mount and --network are not supported');
    const argv = ins.json ?? [...(cfg.shell ?? ['/bin/sh', '-c']), ins.rest];
    const argEnv = this.argEnv(stage);
    const createdBy = `RUN ${argEnv.length ? `|${argEnv.length} ${argEnv.join(' ')} ` : ''}${argv.join(' ')}`;
    const key = keyOf(createdBy);
    if (this.cached(stage, key, createdBy, missed)) return { key, hit: true };
    const runcId = 'strata-build-' + randomBytes(6).toString('hex');
    await this.inContainer(stage, createdBy, key, async (merged, bundle) => {
      const user = resolveUser(merged, cfg.user);
      const cwd = cfg.workingDir || '/';
      mkdirInRoot(merged, cwd, null);
      const created = ['proc', 'sys', 'dev'].filter((d) => !fs.existsSync(path.join(merged, d)));
      writeBundle(bundle, {
        rootfs: merged,
        args: argv,
        env: processEnv(mergeEnv(cfg.env, argEnv), user),
        cwd,
        user,
        terminal: false,
        hostNetwork: this.req.network === 'host',
        hostname: runcId.slice(-12),
      });
      this.say(` ---> Running in ${runcId.slice(-12)}`);
      const dec = new StringDecoder('utf8');
      let result;
      try {
        result = await runcRun(bundle, runcId, (chunk) => this.out(dec.write(chunk)), this.abort);
      } finally {
        runcDelete(runcId);
      }
      const rest = dec.end();
      if (rest) this.out(rest);
      // Mount points runc had to create are not the step's doing.
      for (const d of created) {
        try {
          fs.rmdirSync(path.join(merged, d));
        } catch {
          // not empty: the command put something there
        }
      }
      if (result.code !== 0) throw new BuildFailure(`The command '${argv.join(' ')}' returned a non-zero code: ${result.code}`, result.code);
      this.say(` ---> Removed intermediate container ${runcId.slice(-12)}`);
    });
    return { key, hit: false };
  }

  private async copyStep(
    stage: Stage,
    ins: Instruction,
    ctx: string,
    ignore: Ignore,
    missed: boolean,
    keyOf: (c: string, s?: string) => string,
    _dfName: string,
  ): Promise<{ key: string; hit: boolean }> {
    const kw = ins.keyword;
    const vars = this.vars(stage);
    const cfg = stage.config;
    for (const f of Object.keys(ins.flags)) {
      if (f === 'from') throw new DockerfileError(`${kw} --from is not supported (multi-stage copies)`);
      if (f !== 'chown') throw new DockerfileError(`${kw}: unknown flag --${f}`);
    }
    const words = ins.json ? ins.json.map((w) => processWord(w.replace(/(["'\\])/g, '\\$1'), vars)) : processWords(ins.rest, vars);
    if (words.length < 2) throw new DockerfileError(`${kw} requires at least two arguments: ${kw} SOURCE... DEST`);
    const srcWords = words.slice(0, -1);
    let dest = words[words.length - 1];
    for (const s of srcWords) {
      if (isUrl(s)) {
        throw new DockerfileError(`${kw} ${s}: ${kw === 'ADD' ? 'ADD from a URL' : 'COPY from a URL'} is not supported by strata; download the file into the build context and COPY it`);
      }
    }
    const chown = ins.flags.chown !== undefined ? processWord(ins.flags.chown, vars) : undefined;
    const sources = expandSources(ctx, ignore, srcWords, kw);
    const destIsDir = dest.endsWith('/') || dest.endsWith('/.') || dest === '.';
    if (sources.length > 1 && !destIsDir) {
      throw new DockerfileError(`When using ${kw} with more than one source file, the destination must be a directory and end with a /`);
    }
    if (!dest.startsWith('/')) dest = path.posix.join(cfg.workingDir || '/', dest);
    const sum = checksumSources(ctx, ignore, sources);
    const createdBy = `${kw} ${chown !== undefined ? `--chown=${chown} ` : ''}${words.join(' ')}`;
    const key = keyOf(createdBy, sum);
    if (this.cached(stage, key, createdBy, missed)) return { key, hit: true };
    const bar = this.progress.bytes(this.stepId, 'Copying', sourcesSize(ctx, ignore, sources));
    const onBytes = (n: number) => bar.add(n);
    await this.inContainer(stage, createdBy, key, async (merged) => {
      let owner: Owner = { uid: 0, gid: 0 };
      if (chown !== undefined) {
        const u = resolveUser(merged, chown);
        owner = { uid: u.uid, gid: chown.includes(':') ? u.gid : /^\d+$/.test(chown) ? u.uid : u.gid };
      }
      for (const s of sources) {
        const destDirExists = (() => {
          try {
            return fs.statSync(resolveInRoot(merged, dest)).isDirectory();
          } catch {
            return false;
          }
        })();
        if (s.isDir) {
          copyTree(merged, s.abs, sourceEntries(ctx, ignore, s), dest, owner, onBytes);
          continue;
        }
        const kind = kw === 'ADD' ? archiveKind(s.abs) : null;
        if (kind !== null) {
          await this.extractInto(merged, s.abs, kind, dest);
          onBytes(fs.statSync(s.abs).size);
          continue;
        }
        const target = destIsDir || destDirExists ? path.posix.join(dest, path.posix.basename(s.rel)) : dest;
        mkdirInRoot(merged, path.posix.dirname(target), owner);
        copyTree(merged, s.abs, null, target, owner, onBytes);
      }
      bar.done();
    });
    return { key, hit: false };
  }

  /** ADD of a local archive: extracted (safely, into a temp dir) then copied into the root. */
  private async extractInto(merged: string, file: string, kind: 'tar' | 'gzip' | 'bzip2' | 'xz', dest: string): Promise<void> {
    const tmp = this.d.root.tempDir('add');
    try {
      let input: Readable | string = file;
      if (kind === 'bzip2' || kind === 'xz') {
        const child = spawn(kind === 'xz' ? 'xz' : 'bzip2', ['-dc', file], { stdio: ['ignore', 'pipe', 'ignore'] });
        input = child.stdout;
      }
      await extractLayer(input, path.join(tmp, 'x'));
      copyTree(merged, path.join(tmp, 'x'), null, dest, null);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Runs `fn` in a temporary union mount of the stage's chain and turns the writable
   * layer into the step's layer. Whatever happens, the mount and temp dirs are gone after.
   */
  private async inContainer(stage: Stage, createdBy: string, key: string, fn: (merged: string, bundle: string) => Promise<void>): Promise<void> {
    const tmp = this.d.root.tempDir('build');
    const dirs = { upper: path.join(tmp, 'upper'), work: path.join(tmp, 'work'), merged: path.join(tmp, 'merged'), empty: path.join(tmp, 'empty') };
    for (const p of Object.values(dirs)) fs.mkdirSync(p, { mode: 0o755 });
    const mountId = 'build-' + path.basename(tmp);
    const lowers = stage.layers.length ? this.d.layers.lowerDirs(stage.layers) : [dirs.empty];
    try {
      await this.d.mounts.mount(mountId, { lowers, upper: dirs.upper, work: dirs.work }, dirs.merged, [], () => undefined);
      try {
        await fn(dirs.merged, path.join(tmp, 'bundle'));
      } finally {
        await this.d.mounts.unmount(mountId);
      }
      const parent = stage.layers[stage.layers.length - 1] ?? null;
      const bar = this.progress.bytes(this.stepId, 'Committing', null);
      const layer = await this.d.layers.create(parent, { kind: 'upper', path: dirs.upper, onBytes: (n) => bar.add(n) }, createdBy);
      bar.done();
      this.d.store.buildCache.put(key, layer.id, null);
      this.say(` ---> ${short(layer.id)}`);
      stage.layers.push(layer.id);
      stage.history.push({ created: new Date().toISOString(), createdBy, comment: '', emptyLayer: false, size: layer.size });
    } finally {
      clearStale(dirs.merged);
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
}
