/**
 * Verified I/O on every I/O queue of a controller: a write of random data and a read-back through each queue in turn
 * (pinned with `qid`), so a queue that did not authenticate or negotiate its channel fails the check by itself.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { Controller } from '../../src/host/controller.js';
import * as cmds from '../../src/protocol/commands.js';

export async function verifiedIoOnEveryQueue(ctrl: Controller, blocks: number, nsid = 1): Promise<void> {
  const ns = await ctrl.namespace(nsid);
  const bs = ns.blockSize;
  for (let qid = 1; qid <= ctrl.ioQueueCount; qid++) {
    const data = randomBytes(bs * blocks);
    const slba = BigInt(qid * blocks * 4);
    await ctrl.ioCommand(cmds.write({ nsid, slba, data, blockSize: bs }), { qid });
    const got = await ctrl.ioCommand(cmds.read({ nsid, slba, nlb: blocks, blockSize: bs }), { qid });
    expect(got.data!.equals(data), `I/O queue ${qid}`).toBe(true);
  }
}
