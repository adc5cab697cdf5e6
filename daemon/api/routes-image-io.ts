// Routes for image save/load and container export.
import type { Services } from './routes';
import type { Router } from './server';

export function registerImageIoRoutes(_r: Router, _s: Services): void {
  // Filled in by the issue that adds image save/load and container export.
}
