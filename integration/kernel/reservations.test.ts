/**
 * Persistent reservations against the Linux kernel target (nvmet with `resv_enable` on its namespaces; Linux 7.x,
 * the 'kernel' project only: 6.1 nvmet has no reservations). The scenarios are integration/reservations-scenarios.ts,
 * shared with SPDK (integration/spdk/reservations.test.ts). Where nvmet answers differently:
 * - Report CNTLID: nvmet reports every registrant with controller ID FFFFh (NVME_CNTLID_DYNAMIC: the dynamic
 *   controller model, where a registration belongs to the host ID, not to one of its controllers).
 * - Release with a type that does not match the reservation held: nvmet answers Reservation Conflict (its release
 *   path returns that for a type mismatch), where the NVMe Base specification (and SPDK) answer Invalid Field in
 *   Command.
 */
import { afterAll, beforeAll } from 'vitest';
import { connect } from '../../src/host/controller.js';
import { RESERVATION_NAMESPACES, reservationScenarios } from '../reservations-scenarios.js';
import { describeKernel } from './env.js';

/** The controller ID nvmet reports for every registrant (dynamic controller model). */
const NVMET_REGISTRANT_CNTLID = 0xffff;
const RESV_NQN = 'nqn.2014-08.org.nvmexpress:nvmf-test-reservations';

describeKernel('kernel nvmet: reservations', (target) => {
  beforeAll(async () => {
    // One guest command builds the subsystem: a 2 MiB namespace per scenario, each with resv_enable, on port 1.
    const r = await target.exec(
      [
        'set -e',
        `nvmet-ctl subsys-add ${RESV_NQN} 1 >/dev/null`,
        `for n in $(seq ${RESERVATION_NAMESPACES}); do nvmet-ctl ns-add ${RESV_NQN} $n 2M >/dev/null; nvmet-ctl ns-resv ${RESV_NQN} $n 1 >/dev/null; done`,
        `nvmet-ctl link 1 ${RESV_NQN}`,
      ].join('\n'),
    );
    if (r.code !== 0) throw new Error(`building ${RESV_NQN} failed (exit ${r.code}): ${r.stderr.trim()}`);
  });
  afterAll(async () => {
    await target.removeSubsystem(RESV_NQN);
  });

  reservationScenarios({
    name: 'nvmet',
    connect: (hostnqn) => connect({ host: target.host, port: target.port, subnqn: RESV_NQN, hostnqn, ioQueues: 2 }),
    registrantCntlid: () => NVMET_REGISTRANT_CNTLID,
    releaseWrongType: 'reservation-conflict',
    allRegistrantsHolders: 'every-registrant',
  });
});
