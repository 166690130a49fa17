/**
 * demo: start the embedded target on loopback and walk through what the library does against it, step by step:
 * discovery, identify, write/read with verification, multipath, an ANA change and the event it causes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { AuthError, DhchapKey, NvmeStatusError, connect, type Controller, discover, type AnaChangeEvent, openMultipath, type MultipathNamespace, type PathStateEvent } from '../index.js';
import { DISCOVERY_NQN } from '../protocol/index.js';
import { NvmeTarget } from '../target/index.js';
import { closeQuietly, type Command, type Ctx } from './context.js';
import { discoveryEntryJson, discoveryTable } from './admin.js';
import { describeEvent } from './monitor.js';
import { formatBytes, formatMs, formatTable } from './output.js';

/** NQN of the demo's NVM subsystem. */
export const DEMO_NQN = 'nqn.2024-01.io.nvmeof:demo';
/** The demo's subsystem that requires DH-HMAC-CHAP. */
export const DEMO_AUTH_NQN = 'nqn.2024-01.io.nvmeof:demo-auth';
const HOST = '127.0.0.1';
const NS_BYTES = 64 * 1024 * 1024;
const DATA_BYTES = 1024 * 1024;
const WAIT_MS = 5000;

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `   ${l}`)
    .join('\n') + '\n';
}

/** Resolve with the first value `subscribe` delivers that `accept` takes, or reject after `ms`. */
function waitFor<T>(subscribe: (cb: (v: T) => void) => () => void, accept: (v: T) => boolean, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`demo: no ${what} within ${ms} ms`));
    }, ms);
    const off = subscribe((v) => {
      if (!accept(v)) return;
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'start an embedded target on 127.0.0.1 and walk through discovery, I/O, multipath and an ANA change',
  usage: 'demo [--serve] [--port PORT] [-o json]',
  description:
    'Starts the embedded NVMe/TCP target on 127.0.0.1 with a discovery subsystem and one NVM subsystem exported on two ' +
    'ports with two ANA groups, then, step by step: reads the discovery log, connects and identifies, writes random ' +
    'data and reads it back, opens the namespace through both ports (multipath), makes ANA group 1 inaccessible ' +
    'through port 1 and shows the resulting event, the failing direct read and the multipath read that moves to port ' +
    '2, and connects to a second subsystem that requires DH-HMAC-CHAP (refused without a key, then authenticated both ' +
    'ways with fresh keys that are never printed). Then it shuts everything down. No root, kernel modules or network access needed. With --serve the target keeps ' +
    'running afterwards (until Ctrl-C) so you can try the other commands against it.',
  options: {
    serve: { type: 'boolean', help: 'keep the target running after the walkthrough, until Ctrl-C' },
    port: { type: 'string', arg: 'PORT', help: 'TCP port of the first target port (the second uses PORT+1); 0 picks free ports', def: '0' },
  },
  examples: ['nvmeof demo', 'nvmeof demo --serve --port 4420'],
  async run(ctx, v) {
    const basePort = v.int('port', 0, 65534, 0);
    return runDemo(ctx, { serve: v.flag('serve'), port: basePort });
  },
};

async function runDemo(ctx: Ctx, o: { serve: boolean; port: number }): Promise<number> {
  const json = ctx.format === 'json';
  let stepNo = 0;
  const step = (title: string, body: string, data: Record<string, unknown>) => {
    stepNo++;
    if (json) ctx.jsonLine({ step: stepNo, ...data });
    else ctx.out(`\n${stepNo}. ${title}\n${body ? indent(body) : ''}`);
  };
  if (!json) ctx.out(`nvmeof demo: an embedded NVMe/TCP target on ${HOST}, driven through the nvmeof host library.\n`);

  const target = new NvmeTarget();
  let ctrl: Controller | undefined;
  let mp: MultipathNamespace | undefined;
  try {
    // 1. The target.
    const p1 = await target.listen({ host: HOST, port: o.port, ana: { 1: 'optimized', 2: 'non-optimized' } });
    const p2 = await target.listen({ host: HOST, port: o.port === 0 ? 0 : o.port + 1, ana: { 1: 'non-optimized', 2: 'optimized' } });
    const subsys = target.addSubsystem({ nqn: DEMO_NQN, ana: true, model: 'nvmeof demo', serial: 'DEMO0001' });
    subsys.addNamespace({ nsid: 1, sizeBytes: NS_BYTES, blockSize: 512, anaGroup: 1 });
    subsys.addNamespace({ nsid: 2, sizeBytes: NS_BYTES, blockSize: 4096, anaGroup: 2 });
    const addr = (p: { port: number }) => `${HOST}:${p.port}`;
    step(
      'Target started',
      formatTable(
        ['', ''],
        [
          ['discovery subsystem', DISCOVERY_NQN],
          ['NVM subsystem', `${DEMO_NQN} (ANA reporting)`],
          ['port 1', `${addr(p1)}  ANA group 1 optimized, group 2 non-optimized`],
          ['port 2', `${addr(p2)}  ANA group 1 non-optimized, group 2 optimized`],
          ['namespace 1', `${formatBytes(NS_BYTES)}, 512 B blocks, ANA group 1`],
          ['namespace 2', `${formatBytes(NS_BYTES)}, 4096 B blocks, ANA group 2`],
        ],
        { headers: false },
      ),
      { name: 'target', subnqn: DEMO_NQN, ports: [{ portid: p1.portid, traddr: HOST, trsvcid: String(p1.port) }, { portid: p2.portid, traddr: HOST, trsvcid: String(p2.port) }] },
    );

    // 2. Discovery.
    const disc = await discover({ host: HOST, port: p1.port, signal: ctx.signal });
    step(`Discovery log read from ${addr(p1)}: ${disc.entries.length} entries, generation ${disc.genctr}`, discoveryTable(disc.entries), {
      name: 'discovery',
      genctr: disc.genctr,
      entries: disc.entries.map(discoveryEntryJson),
    });

    // 3. Connect and identify.
    ctrl = await connect({ host: HOST, port: p1.port, subnqn: DEMO_NQN, ioQueues: 2, signal: ctx.signal });
    const id = ctrl.identity;
    const nss = [];
    for (const nsid of await ctrl.activeNamespaceIds()) nss.push(await ctrl.namespace(nsid));
    step(
      `Connected to ${addr(p1)}: controller ${ctrl.cntlid}, NVMe ${id.version.major}.${id.version.minor}, model "${id.mn}", serial ${id.sn}, ` +
        `${ctrl.ioQueueCount} I/O queues of ${ctrl.ioQueueDepth}, up to ${formatBytes(ctrl.maxTransferBytes)} per command`,
      formatTable(
        [{ header: 'NSID', align: 'right' }, { header: 'BLOCKS', align: 'right' }, 'BLOCK SIZE', 'ANA GROUP', 'ANA STATE (port 1)', 'NGUID'],
        nss.map((n) => [String(n.nsid), String(n.blocks), `${n.blockSize} B`, String(n.anaGroup), n.anaState ?? '-', n.nguid ?? '-']),
      ),
      {
        name: 'identify',
        cntlid: ctrl.cntlid,
        model: id.mn,
        serial: id.sn,
        version: `${id.version.major}.${id.version.minor}`,
        namespaces: nss.map((n) => ({ nsid: n.nsid, blocks: n.blocks, blockSize: n.blockSize, anaGroup: n.anaGroup, anaState: n.anaState ?? null })),
      },
    );

    // 4. Write, read back, verify.
    const ns1 = nss.find((n) => n.nsid === 1)!;
    const data = randomBytes(DATA_BYTES);
    let t = performance.now();
    await ns1.write(0n, data, { signal: ctx.signal });
    const writeMs = performance.now() - t;
    t = performance.now();
    const back = await ns1.read(0n, DATA_BYTES / ns1.blockSize, { signal: ctx.signal });
    const readMs = performance.now() - t;
    const same = back.equals(data);
    const digest = createHash('sha256').update(data).digest('hex').slice(0, 16);
    step(
      `Wrote ${formatBytes(DATA_BYTES)} of random data to namespace 1 at LBA 0 (${formatMs(writeMs)}), read it back (${formatMs(readMs)}): ${same ? 'identical' : 'DIFFERENT'}`,
      `sha256 ${digest}... (${DATA_BYTES / ns1.blockSize} blocks, split into commands of at most ${ns1.maxBlocksPerCommand} blocks)`,
      { name: 'write-read', bytes: DATA_BYTES, verified: same, sha256: createHash('sha256').update(data).digest('hex'), writeMs: Math.round(writeMs), readMs: Math.round(readMs) },
    );
    if (!same) throw new Error('demo: the data read back differs from the data written');

    // 5. Multipath over both ports.
    mp = await openMultipath({ subnqn: DEMO_NQN, nsid: 1, paths: [{ host: HOST, port: p1.port }, { host: HOST, port: p2.port }], ioQueues: 1, signal: ctx.signal });
    const health = mp.health();
    step(
      `Opened namespace 1 through both ports (multipath, policy ${health.policy})`,
      formatTable(['PATH', 'STATE', { header: 'CNTLID', align: 'right' }, 'ANA STATE', 'USABLE'], health.paths.map((p) => [p.id, p.state, String(p.cntlid ?? '-'), p.anaState ?? '-', p.usable ? 'yes' : 'no'])),
      { name: 'multipath', policy: health.policy, paths: health.paths.map((p) => ({ path: p.id, state: p.state, cntlid: p.cntlid, anaState: p.anaState, usable: p.usable })) },
    );

    // 6. ANA change and the resulting event.
    const c1 = ctrl;
    const m = mp;
    const event = waitFor<AnaChangeEvent>((cb) => c1.on('ana-change', cb), (ev) => ev.changed.some((c) => c.nsid === 1 && c.state === 'inaccessible'), WAIT_MS, 'ANA change event');
    const pathEvent = waitFor<PathStateEvent>((cb) => m.on('path-state', cb), (ev) => ev.port === p1.port && ev.anaState === 'inaccessible', WAIT_MS, 'multipath path change');
    target.setAnaState(p1, 1, 'inaccessible');
    const ev = await event;
    const pev = await pathEvent;
    let direct: string;
    let directJson: unknown;
    try {
      await ns1.read(0n, 8, { signal: ctx.signal });
      direct = 'a read through controller 1 still succeeds (unexpected)';
      directJson = { ok: true };
    } catch (err) {
      if (!(err instanceof NvmeStatusError)) throw err;
      direct = `a read through controller ${c1.cntlid} (port 1) now fails: ${err.statusName} (SCT ${err.sct}, SC 0x${err.sc.toString(16).padStart(2, '0')}); the CLI exits 1 for such errors`;
      directJson = { ok: false, code: err.code, statusName: err.statusName, sct: err.sct, sc: err.sc };
    }
    const before = new Map(m.health().paths.map((p) => [p.id, p.completed]));
    const viaMp = await m.read(0n, DATA_BYTES / ns1.blockSize, { signal: ctx.signal });
    const served = m.health().paths.find((p) => p.completed > (before.get(p.id) ?? 0))?.id ?? '?';
    const mpSame = viaMp.equals(data);
    const { summary } = describeEvent(ev);
    step(
      `ANA change: group 1 becomes inaccessible through port 1 (${addr(p1)})`,
      [
        `event from controller ${ev.cntlid}: ${summary}`,
        `multipath: path ${pev.path} ANA ${pev.previousAnaState ?? '?'} -> ${pev.anaState}, usable: ${pev.usable ? 'yes' : 'no'}`,
        direct,
        `the same read through multipath went to ${served}: ${mpSame ? 'the data written in step 4' : 'DIFFERENT data'}`,
      ].join('\n'),
      {
        name: 'ana-change',
        event: { type: ev.type, cntlid: ev.cntlid, reason: ev.reason, groups: ev.groups, changed: ev.changed },
        pathEvent: { path: pev.path, anaState: pev.anaState, previousAnaState: pev.previousAnaState, usable: pev.usable },
        directRead: directJson,
        multipathRead: { path: served, verified: mpSame },
      },
    );
    if (!mpSame) throw new Error('demo: the data read through multipath differs from the data written');

    // 7. DH-HMAC-CHAP: a subsystem that requires this host to authenticate, both ways.
    const hostKey = new DhchapKey(randomBytes(32), 1).format();
    const ctrlKey = new DhchapKey(randomBytes(48), 2).format();
    const secured = target.addSubsystem({
      nqn: DEMO_AUTH_NQN,
      ports: [p1],
      model: 'nvmeof demo (authenticated)',
      dhchap: { [ctrl.hostnqn]: { secret: hostKey, ctrlSecret: ctrlKey, hashes: ['sha384'], dhgroups: ['ffdhe2048'] } },
    });
    secured.addNamespace({ nsid: 1, sizeBytes: 1024 * 1024, blockSize: 512 });
    const authenticated: number[] = [];
    target.on('authentication', (e) => {
      if (e.subnqn === DEMO_AUTH_NQN && e.ok) authenticated.push(e.qid);
    });
    let refusal = '';
    try {
      await closeQuietly(await connect({ host: HOST, port: p1.port, subnqn: DEMO_AUTH_NQN, hostnqn: ctrl.hostnqn, ioQueues: 1, signal: ctx.signal }));
      refusal = 'connected without a key (unexpected)';
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      refusal = err.message;
    }
    const sec = await connect({ host: HOST, port: p1.port, subnqn: DEMO_AUTH_NQN, hostnqn: ctrl.hostnqn, ioQueues: 2, dhchap: { secret: hostKey, ctrlSecret: ctrlKey }, signal: ctx.signal });
    const auth = sec.security.authentication!;
    const secNs = await sec.namespace(1);
    const secData = randomBytes(4096);
    await secNs.write(0n, secData, { signal: ctx.signal });
    const secSame = (await secNs.read(0n, 8, { signal: ctx.signal })).equals(secData);
    await closeQuietly(sec);
    step(
      `DH-HMAC-CHAP: ${DEMO_AUTH_NQN} requires this host to authenticate`,
      [
        `without a key: ${refusal}`,
        `with the host and controller secrets: ${auth.hash}, ${auth.dhgroup}, ${auth.bidirectional ? 'bidirectional' : 'host only'}; ` +
          `queues authenticated: ${[...authenticated].sort((a, b) => a - b).join(', ')}; 4 KiB written and read back: ${secSame ? 'identical' : 'DIFFERENT'}`,
      ].join('\n'),
      { name: 'authentication', subnqn: DEMO_AUTH_NQN, authentication: auth, queues: [...authenticated].sort((a, b) => a - b), verified: secSame },
    );
    if (!secSame) throw new Error('demo: the data read through the authenticated controller differs from the data written');

    if (o.serve) {
      target.setAnaState(p1, 1, 'optimized');
      await mp.close();
      mp = undefined;
      await closeQuietly(ctrl);
      ctrl = undefined;
      const cmd = (args: string) => `nvmeof ${args}`;
      const a1 = `-a ${HOST} -s ${p1.port}`;
      step(
        `Target running on ${addr(p1)} and ${addr(p2)} (ANA group 1 optimized again on port 1); Ctrl-C to stop. Try:`,
        [
          cmd(`discover ${a1}`),
          cmd(`list ${a1}`),
          cmd(`list-subsys ${a1}`),
          cmd(`id-ctrl ${a1} -n ${DEMO_NQN} -H`),
          cmd(`ana-log -a ${HOST} -s ${p2.port} -n ${DEMO_NQN}`),
          cmd(`read ${a1} -n ${DEMO_NQN} -N 1 -c 8 | xxd | head`),
          cmd(`monitor -a ${addr(p1)} -a ${addr(p2)} -n ${DEMO_NQN} --discovery ${addr(p1)}`),
          cmd(`perf ${a1} -n ${DEMO_NQN} --time 5`),
        ].join('\n'),
        { name: 'serve', ports: [{ traddr: HOST, trsvcid: String(p1.port) }, { traddr: HOST, trsvcid: String(p2.port) }], subnqn: DEMO_NQN },
      );
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) return resolve();
        ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    }
  } finally {
    await mp?.close().catch(() => {});
    await closeQuietly(ctrl);
    await target.close();
  }
  step('Shut down: controllers closed, target stopped.', '', { name: 'done' });
  if (!json && !o.serve) ctx.out('\nRun "nvmeof demo --serve" to keep the target running and try the other commands against it.\n');
  return 0;
}

