import { afterAll } from 'vitest';
import { disposeAll } from './leftovers.js';

afterAll(disposeAll);
