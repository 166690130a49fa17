import { startSpdkTarget } from './src/spdk/index.js';
const spdk = await startSpdkTarget({ spdkDir: '/work/spdk', cpuMask: '0x2' });
await spdk.applyTopology({
  transports: [{ trtype: 'TCP' }],
  bdevs: [{ type: 'malloc', name: 'bench0', sizeMiB: 256, blockSize: 512 }],
  subsystems: [{ nqn: 'nqn.2016-06.io.spdk:bench', allowAnyHost: true, namespaces: [{ bdev: 'bench0' }], listeners: [{ traddr: '127.0.0.1', trsvcid: 4520 }] }],
});
console.log('ready');
process.on('SIGTERM', async () => { await spdk.stop?.(); process.exit(0); });
setInterval(() => {}, 1 << 30);
