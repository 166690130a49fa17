/**
 * The HTTP API's routing and input checks as pure functions (src/serve/routes.ts): every endpoint of the table is
 * reached by its path and method only, path parameters are percent-decoded, and every refusal is an HttpError with a
 * 4xx status.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, NvmeofError } from '../src/errors.js';
import { errorStatus, type HttpError, parseTarget, requestInput, ROUTES, routeRequest, type RouteName } from '../src/serve/routes.js';

function refused(fn: () => unknown): { status: number; code: string; message: string; allow?: string[] } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NvmeofError);
    const e = err as HttpError;
    return { status: errorStatus(e), code: e.code, message: e.message, ...(e.allow ? { allow: e.allow } : {}) };
  }
  throw new Error('expected a refusal');
}

describe('serve routing', () => {
  it('every endpoint is reached by its own method and path, with its parameters', () => {
    for (const [name, def] of Object.entries(ROUTES)) {
      const path = def.path.replace('{id}', 'x%2F1').replace('{nsid}', '7');
      const r = routeRequest(def.method, path);
      expect(r.name).toBe(name as RouteName);
      expect(r.params).toEqual(def.path.includes('{nsid}') ? ['x/1', '7'] : def.path.includes('{id}') ? ['x/1'] : []);
    }
  });

  it('query and fragment are split off; absolute form is taken', () => {
    const t = parseTarget('http://h:1/v1/controllers/c1/namespaces/2/blocks?lba=0x10&count=3#frag');
    expect(t.segments).toEqual(['v1', 'controllers', 'c1', 'namespaces', '2', 'blocks']);
    expect(t.query.get('lba')).toBe('0x10');
    const r = routeRequest('GET', 'http://h:1/v1/controllers/c1/namespaces/2/blocks?lba=0x10&count=3');
    expect(requestInput(r, {}, undefined)).toEqual({ id: 'c1', nsid: 2, lba: 16n, count: 3 });
    expect(refused(() => routeRequest('GET', 'HTTP://h'))).toMatchObject({ status: 404, message: 'no endpoint /' });
  });

  it('refusals: 400 for a malformed target, 404 for an unknown path, 405 with the allowed methods', () => {
    expect(refused(() => routeRequest('GET', '/v1/controllers/%E0%A4%A'))).toEqual({ status: 400, code: ErrorCode.INVALID_ARGUMENT, message: 'the path has malformed percent-encoding: "%E0%A4%A"' });
    expect(refused(() => routeRequest('GET', '/v1/%zz'))).toMatchObject({ status: 400 });
    expect(refused(() => routeRequest('GET', '*'))).toMatchObject({ status: 400, message: 'the request target must be a path, got "*"' });
    expect(refused(() => routeRequest('GET', 'v1/health'))).toMatchObject({ status: 400 });
    expect(refused(() => routeRequest('GET', '//host/v1/health'))).toEqual({ status: 404, code: ErrorCode.NOT_FOUND, message: 'no endpoint //host/v1/health' });
    expect(refused(() => routeRequest('GET', '/v1/controllers//namespaces'))).toMatchObject({ status: 404 });
    expect(refused(() => routeRequest('PATCH', '/v1/controllers/c1'))).toEqual({ status: 405, code: ErrorCode.INVALID_ARGUMENT, message: 'PATCH is not allowed on /v1/controllers/c1', allow: ['GET', 'DELETE'] });
    expect(refused(() => routeRequest('get', '/v1/health'))).toMatchObject({ status: 405, allow: ['GET'] });
  });

  it('endpoint inputs: nsid, lba, count, extended and Last-Event-ID are checked', () => {
    const input = (method: string, target: string, headers: Record<string, string> = {}, body?: unknown) => requestInput(routeRequest(method, target), headers, body);
    expect(refused(() => input('GET', '/v1/controllers/c1/namespaces/0/blocks?lba=0&count=1'))).toMatchObject({ status: 400, message: 'nsid must be 1..4294967294, got "0"' });
    expect(refused(() => input('GET', '/v1/controllers/c1/namespaces/4294967295/reservations'))).toMatchObject({ status: 400 });
    expect(refused(() => input('GET', '/v1/controllers/c1/namespaces/1/blocks?lba=18446744073709551616&count=1'))).toMatchObject({ status: 400, message: /lba must be a 64-bit/ });
    expect(refused(() => input('GET', '/v1/controllers/c1/namespaces/1/blocks?lba=1&count=0'))).toMatchObject({ status: 400, message: 'count must be a positive integer, got "0"' });
    expect(refused(() => input('GET', '/v1/controllers/c1/namespaces/1/reservations?extended=yes'))).toMatchObject({ status: 400 });
    expect(refused(() => input('GET', '/v1/events', { 'last-event-id': '-1' }))).toMatchObject({ status: 400, message: /Last-Event-ID/ });
    expect(input('GET', '/v1/events?lastEventId=5')).toEqual({ lastEventId: 5 });
    expect(input('GET', '/v1/events', { 'last-event-id': '9' })).toEqual({ lastEventId: 9 });
    expect(input('POST', '/v1/controllers/c1/namespaces/3/reservations/register', {}, { action: 'register', newKey: '0x10' })).toEqual({ id: 'c1', nsid: 3, params: { action: 'register', newKey: 16n } });
    expect(refused(() => input('POST', '/v1/controllers/c1/reconnect', {}, { now: true }))).toMatchObject({ status: 400, message: /unknown field "now"/ });
  });
});
