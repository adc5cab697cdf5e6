// Routes for image save/load and container export (types: ./types-image-io.ts).
import { exportContainer } from '../images/archive-export';
import { loadImages, saveImage } from '../images/oci-layout';
import { badRequest } from './errors';
import { str, type Services } from './routes';
import type { Router } from './server';
import type { SaveFormat } from './types-image-io';

export function registerImageIoRoutes(r: Router, s: Services): void {
  r.add('POST', '/images/:ref/save', (req) => {
    const format = str(req, 'format') ?? 'oci-archive';
    if (format !== 'oci-archive' && format !== 'docker-archive') throw badRequest(`unknown format "${format}": use oci-archive or docker-archive`);
    return saveImage(s, req.params.ref, str(req, 'output', true), format as SaveFormat);
  });
  r.add('POST', '/images/load', (req) => loadImages(s, str(req, 'input', true)));
  r.add('POST', '/containers/:id/export', (req) => exportContainer(s, req.params.id, str(req, 'output', true)));
}
