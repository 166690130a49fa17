/**
 * Persistent reservations against SPDK's nvmf_tgt. The scenarios are integration/reservations-scenarios.ts, shared
 * with the kernel target (integration/kernel/reservations.test.ts). SPDK reports each registrant with its own
 * controller's ID and answers a Release of the wrong type with Invalid Field in Command, as the specification asks;
 * for the All Registrants types its report marks only the registrant that acquired as the holder (it keeps one holder
 * per namespace), where the specification makes every registrant a holder. Every scenario has its own namespace (its
 * own malloc bdev).
 */
import { connect } from '../../src/host/controller.js';
import { RESERVATION_NAMESPACES, reservationScenarios } from '../reservations-scenarios.js';
import { describeSpdk, useSpdkTopology } from './env.js';

describeSpdk('reservations against SPDK', (env) => {
  const nqn = env.uniqueNqn('resv');
  const tag = nqn.slice(-8);
  let port = 0;
  useSpdkTopology(env, async () => {
    port = await env.freePort();
    const bdevs = Array.from({ length: RESERVATION_NAMESPACES }, (_, i) => ({ type: 'malloc' as const, name: `resv-${tag}-${i + 1}`, blockSize: 512, sizeMiB: 4 }));
    return {
      bdevs,
      subsystems: [{
        nqn,
        namespaces: bdevs.map((b, i) => ({ bdev: b.name, nsid: i + 1 })),
        listeners: [{ traddr: env.host, trsvcid: port }],
      }],
    };
  });

  reservationScenarios({
    name: 'SPDK',
    connect: (hostnqn) => connect({ host: env.host, port, subnqn: nqn, hostnqn, ioQueues: 2 }),
    registrantCntlid: (ctrl) => ctrl.cntlid,
    releaseWrongType: 'invalid-field',
    allRegistrantsHolders: 'acquirer',
  });
});
