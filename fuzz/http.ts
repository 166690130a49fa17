/**
 * Fuzz target for `nvmeof serve`'s HTTP request handling (src/serve/routes.ts): a method, request target, headers and
 * body go through exactly what the server does before it touches the daemon (bearer token, routing, declared length,
 * JSON body, the endpoint's input checks). A client never gets a 5xx for what it sent, and an error never echoes a
 * dhchap secret.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { NvmeofError } from '../src/errors.js';
import * as routes from '../src/serve/routes.js';
import { FuzzFinding, touch } from './common.js';

const TOKEN_DIGEST = createHash('sha256').update('fuzz-token-0123456789').digest();

/** The request as node:http hands it over: method, target, lower-cased headers (repeats joined), body. */
export function parseRequestInput(b: Buffer): { method: string; target: string; headers: Record<string, string>; body: Buffer } {
  const end = b.indexOf('\n\n');
  const head = (end >= 0 ? b.subarray(0, end) : b).toString('latin1');
  const body = end >= 0 ? b.subarray(end + 2) : Buffer.alloc(0);
  const lines = head.split('\n');
  const first = lines[0] ?? '';
  const sp = first.indexOf(' ');
  const method = sp >= 0 ? first.slice(0, sp) : first;
  const target = sp >= 0 ? first.slice(sp + 1) : '/';
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (c <= 0) continue;
    const name = l.slice(0, c).trim().toLowerCase();
    const value = l.slice(c + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { method, target, headers, body };
}

export const httpTarget = {
  name: 'serve-http',
  description:
    "nvmeof serve HTTP request handling: method, request target, headers and body through the token check, routing, declared length, JSON body and each endpoint's input checks (byte 0 bit 0: a TCP listener with a token); no 5xx for client input, no secret echoed",
  run(data: Buffer): void {
    if (data.length < 1) return;
    const { method, target, headers, body } = parseRequestInput(data.subarray(1));
    let json: unknown;
    try {
      if ((data[0]! & 1) !== 0 && !routes.bearerMatches(headers.authorization, TOKEN_DIGEST)) throw new routes.HttpError(401, 'NVMEOF_ERR_UNAUTHORIZED', 'a valid bearer token is required');
      const r = routes.routeRequest(method, target);
      if (routes.ROUTES[r.name].method !== method) throw new FuzzFinding(`${method} ${target} routed to ${r.name} (${routes.ROUTES[r.name].method})`);
      if (r.body === 'json' || r.body === 'optional-json') {
        routes.checkDeclaredLength(headers['content-length'], routes.MAX_JSON_BODY);
        json = routes.parseJsonBody(body, r.body === 'optional-json');
      } else if (r.body === 'raw') {
        routes.checkDeclaredLength(headers['content-length'], 1024 * 1024);
      }
      const input = routes.requestInput(r, headers, json) as { nsid?: unknown; lba?: unknown; count?: unknown };
      touch(input);
      if (input.nsid !== undefined && !(Number.isInteger(input.nsid) && (input.nsid as number) >= 1 && (input.nsid as number) <= 0xfffffffe)) throw new FuzzFinding(`nsid ${String(input.nsid)} passed`);
      if (input.lba !== undefined && !(typeof input.lba === 'bigint' && input.lba >= 0n && input.lba < 1n << 64n)) throw new FuzzFinding(`lba ${String(input.lba)} passed`);
      if (input.count !== undefined && !(Number.isSafeInteger(input.count) && (input.count as number) >= 1)) throw new FuzzFinding(`count ${String(input.count)} passed`);
    } catch (err) {
      if (!(err instanceof NvmeofError)) throw err;
      const status = routes.errorStatus(err);
      if (status < 400 || status >= 500) throw new FuzzFinding(`client input answered ${status} (${err.code}: ${err.message})`);
      const secret = (json as { dhchap?: { secret?: unknown } } | null | undefined)?.dhchap?.secret;
      if (typeof secret === 'string' && secret.length >= 8 && err.message.includes(secret)) throw new FuzzFinding('an error echoes the dhchap secret');
    }
  },
};
