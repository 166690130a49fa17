// Worker entry: load TypeScript through tsx, then start the fuzzing engine.
import { register } from 'tsx/esm/api';

register();
await import('./engine.ts');
