/**
 * Persistent reservations: resv-register, resv-acquire, resv-release, resv-report (flags as nvme-cli names them).
 */
import { type Controller, type Namespace, type ReservationReport } from '../index.js';
import * as resv from '../protocol/index.js';
import { TARGET_OPTIONS, UsageError, namespaceOption, type OptionSpecs, type Values } from './args.js';
import { withController, type Command, type Ctx } from './context.js';
import { formatTable, hex } from './output.js';

const TYPE_HELP = 'reservation type: 1 write-exclusive, 2 exclusive-access, 3 write-exclusive-registrants-only, 4 exclusive-access-registrants-only, 5 write-exclusive-all-registrants, 6 exclusive-access-all-registrants (number or name)';

function rtypeOf(v: Values, required: boolean): resv.ReservationType | undefined {
  const s = v.str('rtype');
  if (s === undefined) {
    if (required) v.required('rtype', 'the reservation type');
    return undefined;
  }
  const byName = resv.RESERVATION_TYPES.find((t) => t === s.toLowerCase());
  if (byName) return byName;
  return resv.reservationTypeName(v.int('rtype', 1, 6)!)!;
}

/** An action given as its number or its name. */
function actionOf<T extends string>(v: Values, flag: string, names: readonly T[]): T {
  const s = v.str(flag);
  if (s === undefined) return names[0]!;
  const byName = names.find((n) => n === s.toLowerCase());
  if (byName) return byName;
  return names[v.int(flag, 0, names.length - 1)!]!;
}

function keyText(k: bigint): string {
  return hex(k);
}

async function onNamespace<T>(ctx: Ctx, v: Values, fn: (ns: Namespace, ctrl: Controller) => Promise<T>): Promise<{ nsid: number; result: T }> {
  const nsid = v.int('namespace-id', 1, 0xfffffffe, 1);
  const result = await withController(ctx, v, { ioQueues: 1, events: false }, async (ctrl) => fn(await ctrl.namespace(nsid), ctrl));
  return { nsid, result };
}

const NSID: OptionSpecs = namespaceOption('1');

export const resvRegisterCommand: Command = {
  name: 'resv-register',
  summary: 'register, unregister or replace this host\'s reservation key (Reservation Register)',
  usage: 'resv-register -a ADDR -n NQN [-N NSID] [--rrega ACTION] [--crkey KEY] [--nrkey KEY] [--iekey] [--cptpl N] [options]',
  description:
    'Registers a reservation key for this host (its host ID) on a namespace, or unregisters or replaces it. Keys are ' +
    '64-bit numbers in decimal or 0x hex. --crkey is required to unregister or replace unless --iekey is given.',
  options: {
    ...NSID,
    rrega: { type: 'string', arg: 'ACTION', help: 'action: 0/register, 1/unregister, 2/replace', def: '0' },
    crkey: { type: 'string', arg: 'KEY', help: 'current reservation key' },
    nrkey: { type: 'string', arg: 'KEY', help: 'new reservation key (register, replace)' },
    iekey: { type: 'boolean', help: 'ignore existing key: skip the current key check' },
    cptpl: { type: 'string', arg: 'N', help: 'change persist through power loss: 0 no change, 2 clear, 3 set', def: '0' },
  },
  connection: TARGET_OPTIONS,
  examples: [
    'nvmeof resv-register -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -N 1 --nrkey 0xabc',
    'nvmeof resv-register -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --rrega unregister --crkey 0xabc',
  ],
  async run(ctx, v) {
    const action = actionOf(v, 'rrega', ['register', 'unregister', 'replace'] as const);
    const crkey = v.u64('crkey');
    const nrkey = v.u64('nrkey');
    const cptpl = v.int('cptpl', 0, 3, 0);
    if (cptpl === 1) throw new UsageError('--cptpl must be 0 (no change), 2 (clear) or 3 (set)', v.command);
    const iekey = v.flag('iekey');
    const { nsid } = await onNamespace(ctx, v, (ns) =>
      ns.reservationRegister({
        action,
        ...(crkey === undefined ? {} : { currentKey: crkey }),
        ...(nrkey === undefined ? {} : { newKey: nrkey }),
        ...(iekey ? { ignoreExistingKey: true } : {}),
        ...(cptpl === 0 ? {} : { persistThroughPowerLoss: cptpl === 3 }),
      }),
    );
    if (ctx.format === 'json') return void ctx.json({ nsid, action, crkey: crkey ?? null, nrkey: nrkey ?? null, iekey, cptpl });
    const what = action === 'register' ? `registered key ${keyText(nrkey!)}` : action === 'replace' ? `replaced the key with ${keyText(nrkey!)}` : 'unregistered this host';
    ctx.out(`resv-register: ${what} on namespace ${nsid}\n`);
  },
};

export const resvAcquireCommand: Command = {
  name: 'resv-acquire',
  summary: 'acquire a reservation, or preempt other registrants (Reservation Acquire)',
  usage: 'resv-acquire -a ADDR -n NQN [-N NSID] --crkey KEY --rtype TYPE [--racqa ACTION] [--prkey KEY] [options]',
  description:
    'Acquires a reservation of the given type with this host\'s registered key, or preempts the registrants holding ' +
    '--prkey (and, with preempt-and-abort, aborts their commands).',
  options: {
    ...NSID,
    crkey: { type: 'string', arg: 'KEY', help: 'this host\'s registered key' },
    prkey: { type: 'string', arg: 'KEY', help: 'key of the registrants to preempt (preempt, preempt-and-abort)' },
    rtype: { type: 'string', arg: 'TYPE', help: TYPE_HELP },
    racqa: { type: 'string', arg: 'ACTION', help: 'action: 0/acquire, 1/preempt, 2/preempt-and-abort', def: '0' },
    iekey: { type: 'boolean', help: 'ignore existing key (sent as is; obsolete for this command in NVMe 2.0)' },
  },
  connection: TARGET_OPTIONS,
  examples: ['nvmeof resv-acquire -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --crkey 0xabc --rtype 1', 'nvmeof resv-acquire -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --crkey 0xdef --prkey 0xabc --rtype 1 --racqa preempt'],
  async run(ctx, v) {
    const action = actionOf(v, 'racqa', ['acquire', 'preempt', 'preempt-and-abort'] as const);
    const type = rtypeOf(v, true)!;
    v.required('crkey', "this host's registered key");
    const crkey = v.u64('crkey')!;
    const prkey = v.u64('prkey');
    const iekey = v.flag('iekey');
    const { nsid } = await onNamespace(ctx, v, async (ns, ctrl) => {
      if (!iekey) return ns.reservationAcquire({ action, type, key: crkey, ...(prkey === undefined ? {} : { preemptKey: prkey }) });
      await ctrl.ioCommand(resv.reservationAcquire({ nsid: ns.nsid, action, type, crkey, prkey: prkey ?? 0n, iekey: true }), { signal: ctx.signal });
    });
    if (ctx.format === 'json') return void ctx.json({ nsid, action, rtype: resv.ReservationTypeValue[type], type, crkey, prkey: prkey ?? null, iekey });
    ctx.out(`resv-acquire: ${action === 'acquire' ? 'acquired' : action === 'preempt' ? 'preempted and acquired' : 'preempted (with abort) and acquired'} a ${type} reservation on namespace ${nsid}\n`);
  },
};

export const resvReleaseCommand: Command = {
  name: 'resv-release',
  summary: 'release or clear a reservation (Reservation Release)',
  usage: 'resv-release -a ADDR -n NQN [-N NSID] --crkey KEY [--rtype TYPE] [--rrela ACTION] [options]',
  description: 'Releases the reservation this host holds (the type must match it), or clears the reservation and every registration.',
  options: {
    ...NSID,
    crkey: { type: 'string', arg: 'KEY', help: 'this host\'s registered key' },
    rtype: { type: 'string', arg: 'TYPE', help: `${TYPE_HELP}; required to release` },
    rrela: { type: 'string', arg: 'ACTION', help: 'action: 0/release, 1/clear', def: '0' },
    iekey: { type: 'boolean', help: 'ignore existing key (sent as is; obsolete for this command in NVMe 2.0)' },
  },
  connection: TARGET_OPTIONS,
  examples: ['nvmeof resv-release -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --crkey 0xabc --rtype 1', 'nvmeof resv-release -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 --crkey 0xabc --rrela clear'],
  async run(ctx, v) {
    const action = actionOf(v, 'rrela', ['release', 'clear'] as const);
    const type = rtypeOf(v, action === 'release');
    v.required('crkey', "this host's registered key");
    const crkey = v.u64('crkey')!;
    const iekey = v.flag('iekey');
    const { nsid } = await onNamespace(ctx, v, async (ns, ctrl) => {
      if (!iekey) return ns.reservationRelease({ action, key: crkey, ...(type === undefined ? {} : { type }) });
      await ctrl.ioCommand(resv.reservationRelease({ nsid: ns.nsid, action, crkey, iekey: true, ...(type === undefined ? {} : { type }) }), { signal: ctx.signal });
    });
    if (ctx.format === 'json') return void ctx.json({ nsid, action, rtype: type === undefined ? null : resv.ReservationTypeValue[type], type: type ?? null, crkey, iekey });
    ctx.out(`resv-release: ${action === 'release' ? `released the ${type} reservation` : 'cleared the reservation and every registration'} on namespace ${nsid}\n`);
  },
};

/** The JSON shape of a reservation report. */
export function reportJson(nsid: number, r: ReservationReport): unknown {
  const reg = (x: ReservationReport['registrants'][number]) => ({ cntlid: x.cntlid, hostId: x.hostId, key: x.key, holdsReservation: x.holdsReservation });
  return {
    nsid,
    generation: r.generation,
    type: r.type,
    rtype: r.rtype,
    ptpls: r.ptpls,
    extended: r.extended,
    holder: r.holder ? reg(r.holder) : null,
    registrants: r.registrants.map(reg),
  };
}

export const resvReportCommand: Command = {
  name: 'resv-report',
  summary: 'show the reservation status of a namespace: type, holder, registrants (Reservation Report)',
  usage: 'resv-report -a ADDR -n NQN [-N NSID] [--eds] [options]',
  description:
    'Reads the reservation status: generation, the reservation type held (if any), and every registrant with its ' +
    'controller ID, host ID and key. The extended data structure (128-bit host IDs) is asked for first and the ' +
    'standard one used if the controller refuses it; --eds insists on the extended one.',
  options: {
    ...NSID,
    eds: { type: 'boolean', help: 'extended data structure (128-bit host IDs) only' },
  },
  connection: TARGET_OPTIONS,
  examples: ['nvmeof resv-report -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -N 1', 'nvmeof resv-report -a 192.0.2.10 -n nqn.2024-01.com.example:disk1 -o json'],
  async run(ctx, v) {
    const eds = v.flag('eds');
    const { nsid, result: r } = await onNamespace(ctx, v, (ns) => ns.reservationReport(eds ? { extended: true } : {}, { signal: ctx.signal }));
    if (ctx.format === 'json') return void ctx.json(reportJson(nsid, r));
    const held = r.type === null ? 'no reservation held' : `${r.type} (${r.rtype}) held by controller ${r.holder?.cntlid ?? '?'}`;
    ctx.out(`Namespace ${nsid}: generation ${r.generation}, ${held}, persist through power loss: ${r.ptpls ? 'yes' : 'no'}\n`);
    if (r.registrants.length === 0) return void ctx.out('No registrants.\n');
    ctx.out(
      formatTable(
        [{ header: 'CNTLID', align: 'right' }, 'HOST ID', 'KEY', 'HOLDER'],
        r.registrants.map((x) => [x.cntlid === 0xffff ? '-' : String(x.cntlid), x.hostId, keyText(x.key), x.holdsReservation ? 'yes' : 'no']),
      ),
    );
  },
};
