// Routes for image save/load and container export (types: ./types-image-io.ts).
// Save and load answer with a progress stream (types-progress.ts) ending in {result}.
import { exportContainer, exportContainerStream } from '../images/archive-export';
import { loadImages, saveImage } from '../images/oci-layout';
import { badRequest } from './errors';
import { progressStream } from './progress';
import { str, type Services } from './routes';
import type { Router } from './server';
import type { SaveFormat } from './types-image-io';

export function registerImageIoRoutes(r: Router, s: Services): void {
  r.add('POST', '/images/:ref/save', (req) => {
    const format = str(req, 'format') ?? 'oci-archive';
    if (format !== 'oci-archive' && format !== 'docker-archive') throw badRequest(`unknown format "${format}": use oci-archive or docker-archive`);
    const output = str(req, 'output', true);
    return progressStream((p) => saveImage(s, req.params.ref, output, format as SaveFormat, p), { log: s.log, what: 'image save' });
  });
  r.add('POST', '/images/load', (req) => {
    const input = str(req, 'input', true);
    return progressStream((p) => loadImages(s, input, p), { log: s.log, what: 'image load' });
  });
  r.add('POST', '/containers/:id/export', (req) => exportContainer(s, req.params.id, str(req, 'output', true)));
  r.add('GET', '/containers/:id/export', (req) => exportContainerStream(s, req.params.id));
}
