// Routes for build, run and exec.
import type { Services } from './routes';
import type { Router } from './server';

export function registerBuildRunRoutes(_r: Router, _s: Services): void {
  // Filled in by the issue that adds build, run and exec.
}
