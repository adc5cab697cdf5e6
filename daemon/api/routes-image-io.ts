// Routes for image save/load and container export (types: daemon/model/types-image-io.ts). Archives travel
// through the socket; save answers with a multiplexed stream, load with a progress stream.
import { exportContainer } from '../containers/export';
import { loadImages } from '../images/image-load';
import { saveImage } from '../images/image-save';
import { invalid } from '../model/errors';
import { progressStream, progressStreamWithData } from './progress';
import { query } from './request';
import type { Services } from './services';
import { Streamed, type Router } from './server';
import type { SaveFormat } from '../model/types-image-io';

export function registerImageIoRoutes(r: Router, s: Services): void {
  r.add('POST', '/images/:ref/save', (req) => {
    const format = query(req, 'format') ?? 'oci-archive';
    if (format !== 'oci-archive' && format !== 'docker-archive') throw invalid(`unknown format "${format}": use oci-archive or docker-archive`);
    const img = s.images.resolve(req.params.ref); // an unknown image is a plain 404, before any byte
    return progressStreamWithData((p, out) => s.images.reading(img.id, () => saveImage(s, img.id, out, format as SaveFormat, p)), { log: s.log, what: 'image save' });
  });
  r.add('POST', '/images/load', (req) => progressStream((p) => loadImages(s, req.upload, p), { log: s.log, what: 'image load' }), { upload: true });
  r.add('GET', '/containers/:id/export', (req) => new Streamed(exportContainer(s, req.params.id), 'application/x-tar'));
}
