// Reading a request: typed fields of the JSON body and the query, each refused with a message that
// names the field when it has the wrong shape. Routes parse with these and nothing else.
import { invalid } from '../model/errors';
import type { MountSpec } from '../model/types';
import type { RegistryAuth } from '../model/types-registry';
import type { ApiRequest } from './server';
import { jsonErrorWhere } from '../util/json-error';

export function str(req: ApiRequest, key: string, required: true): string;
export function str(req: ApiRequest, key: string, required?: false): string | undefined;
export function str(req: ApiRequest, key: string, required = false): string | undefined {
  const v = req.body[key];
  if (v === undefined || v === null) {
    if (required) throw invalid(`"${key}" is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw invalid(`"${key}" must be a string`);
  return v;
}

/** A query parameter (routes whose body is an upload take their options there). */
export function query(req: ApiRequest, key: string, required: true): string;
export function query(req: ApiRequest, key: string, required?: false): string | undefined;
export function query(req: ApiRequest, key: string, required = false): string | undefined {
  const v = req.query.get(key);
  if (v === null) {
    if (required) throw invalid(`query parameter "${key}" is required`);
    return undefined;
  }
  return v;
}

export function strings(req: ApiRequest, key: string): string[] | undefined {
  const v = req.body[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalid(`"${key}" must be an array of strings`);
  return v as string[];
}

export function record(req: ApiRequest, key: string): Record<string, string> | undefined {
  const v = req.body[key];
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
    throw invalid(`"${key}" must be an object of strings`);
  }
  return v as Record<string, string>;
}

export function flag(req: ApiRequest, key: string): boolean {
  const v = req.query.get(key);
  return v === '1' || v === 'true';
}

export function mountSpecs(req: ApiRequest): MountSpec[] | undefined {
  const v = req.body.mounts;
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw invalid('"mounts" must be an array');
  return v.map((m: unknown, i) => {
    const o = m as Record<string, unknown>;
    if (o === null || typeof o !== 'object') throw invalid(`mounts[${i}] must be an object`);
    if (o.type !== 'volume' && o.type !== 'bind') throw invalid(`mounts[${i}].type must be "volume" or "bind"`);
    if (typeof o.target !== 'string') throw invalid(`mounts[${i}].target is required`);
    if (typeof o.source !== 'string') throw invalid(`mounts[${i}].source must be a string`);
    return { type: o.type, source: o.source, target: o.target, readonly: o.readonly === true };
  });
}

export function bool(req: ApiRequest, key: string): boolean {
  const v = req.body[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalid(`"${key}" must be a boolean`);
  return v;
}

/** A boolean the client may leave out (undefined: the daemon's default). */
export function optionalBool(req: ApiRequest, key: string): boolean | undefined {
  const v = req.body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalid(`"${key}" must be a boolean`);
  return v;
}

/** Registry credentials: {username, password}. */
export function auth(req: ApiRequest): RegistryAuth | undefined {
  const a = req.body.auth as unknown;
  if (a === undefined || a === null) return undefined;
  const o = a as Record<string, unknown>;
  if (typeof o !== 'object' || typeof o.username !== 'string' || typeof o.password !== 'string') throw invalid('"auth" must be {username, password}');
  return { username: o.username, password: o.password };
}

/** A query parameter holding a JSON object of strings (build args). */
export function jsonRecordQuery(req: ApiRequest, key: string): Record<string, string> | undefined {
  const raw = query(req, key);
  if (raw === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    throw invalid(`query parameter "${key}" is not valid JSON: syntax error${jsonErrorWhere(err)}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
    throw invalid(`query parameter "${key}" must be a JSON object of strings`);
  }
  return v as Record<string, string>;
}
