/**
 * The pure protocol layer: NVMe/TCP PDU codecs and stream reader, CRC32C digests, SQE/CQE/SGL codecs, command
 * builders, status decoding, controller properties, Identify data and log page codecs, NQN helpers.
 * Bytes in, values out: no sockets, timers or events.
 *
 * @module nvmeof/protocol
 */
export * from './constants.js';
export * from './crc32c.js';
export * from './pdu.js';
export * from './reader.js';
export * from './sqe.js';
export * from './sgl.js';
export * from './cqe.js';
export * from './status.js';
export * from './properties.js';
export * from './commands.js';
export * from './nqn.js';
export * from './identify.js';
export * from './ana.js';
export * from './async-events.js';
export * from './logpages.js';
export * from './reservations.js';
export * from './auth.js';
