/**
 * Multipath: a namespace reached through several paths (controllers) of one subsystem, ANA-aware path selection,
 * failover with retry, background reconnect (reconnect delay, controller loss and fast I/O fail timeouts, as Linux)
 * and a health monitor.
 */
export { openMultipath, MultipathNamespace, type MultipathOptions, type PathAddress, type PathStateEvent, type MultipathHealth, type MultipathEvent, type MultipathOverflowEvent } from './namespace.js';
export {
  Path,
  pathId,
  PathMismatchError,
  type PathState,
  type PathOptions,
  type PathController,
  type PathNamespace,
  type PathAnaEvent,
  type PathChange,
  type PathEvent,
  type PathEventMap,
  type PathHealth,
  type PathErrorCounts,
  type PathEventRecord,
} from './path.js';
export {
  FailoverSelector,
  RoundRobinSelector,
  QueueDepthSelector,
  createSelector,
  isOptimized,
  isNonOptimized,
  type PathSelector,
  type PathCandidate,
  type PolicyName,
} from './policy.js';
export { classifyIoError, type IoErrorClass, type PathErrorKind } from './classify.js';
