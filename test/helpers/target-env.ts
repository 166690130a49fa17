/**
 * Test fixture for the embedded target: a target with one port, one subsystem and one namespace, plus host
 * controllers that are all closed by cleanup().
 */
import { NvmeTarget, type NvmeTargetOptions, type NamespaceOptions, type SubsystemOptions, type TargetNamespace, type TargetPort, type TargetSubsystem } from '../../src/target/index.js';
import { connect, type ConnectOptions, type Controller } from '../../src/host/controller.js';
import { keepAlive } from '../../src/protocol/commands.js';

export const SUBNQN = 'nqn.2024-01.io.nvmeof.test:disk1';
export const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:6c2f7a0e-3b1d-4c8e-9f00-1a2b3c4d5e6f';
export const HOSTNQN2 = 'nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';

export class TargetEnv {
  target!: NvmeTarget;
  port!: TargetPort;
  subsys!: TargetSubsystem;
  ns!: TargetNamespace;
  private readonly ctrls: Controller[] = [];
  private readonly targets: NvmeTarget[] = [];

  /** Start a target with a port, a subsystem and (unless ns is null) one namespace. */
  async start(opts: { target?: NvmeTargetOptions; subsystem?: Partial<SubsystemOptions>; ns?: NamespaceOptions | null } = {}): Promise<this> {
    this.target = new NvmeTarget(opts.target);
    this.targets.push(this.target);
    this.port = await this.target.listen({ host: '127.0.0.1', port: 0 });
    this.subsys = this.target.addSubsystem({ nqn: SUBNQN, ...opts.subsystem });
    if (opts.ns !== null) this.ns = this.subsys.addNamespace(opts.ns ?? { blocks: 8192 });
    return this;
  }

  /** Track another target for cleanup. */
  track(t: NvmeTarget): NvmeTarget {
    this.targets.push(t);
    return t;
  }

  /** Connect the host library to the target (defaults: this port, this subsystem, one fixed host NQN, 2 I/O queues). */
  async connect(opts: Partial<ConnectOptions> = {}): Promise<Controller> {
    const ctrl = await connect({ host: '127.0.0.1', port: this.port.port, subnqn: SUBNQN, hostnqn: HOSTNQN, ioQueues: 2, ...opts });
    this.ctrls.push(ctrl);
    return ctrl;
  }

  /** Destroy every controller and close every target. */
  async cleanup(): Promise<void> {
    for (const c of this.ctrls.splice(0)) c.destroy();
    for (const t of this.targets.splice(0)) await t.close();
  }
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The barrier for checks that something did NOT happen on a controller's admin queue: a Keep Alive round trip.
 * Commands on one queue go out in submission order, and the target answers one queue's commands in order on one
 * connection, so an answer it queued before this Keep Alive's (an AER completion) has reached the host, and a command
 * the host submitted before it (an AER) has reached the target, once this one completes. No wall time is involved.
 */
export async function adminRoundTrip(ctrl: Controller): Promise<void> {
  await ctrl.adminCommand(keepAlive());
}

/** Settle state of a promise right now (after a macrotask turn). */
export async function settled(p: Promise<unknown>): Promise<'pending' | 'fulfilled' | 'rejected'> {
  let state: 'pending' | 'fulfilled' | 'rejected' = 'pending';
  p.then(() => (state = 'fulfilled'), () => (state = 'rejected'));
  await new Promise((r) => setImmediate(r));
  return state;
}
