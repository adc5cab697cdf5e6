// API types of image save/load and container export (routes: daemon/api/routes-image-io.ts).
//
//   POST /images/{ref}/save?format=F             -> multiplexed stream (daemon/model/progress.ts): the archive
//                                                   on channel 1, progress ending {result: SaveResponse} on 2
//   POST /images/load   body: the archive (tar, plain or gzip) -> progress stream, {result: LoadResponse}
//   POST /images/import?ref=R&message=M  body: a rootfs tar (plain or gzip) -> { id: string }
//   GET  /containers/{id}/export                 -> the merged root as a tar (application/x-tar)
//
// Archives travel through the socket: the CLI reads and writes the files with its user's own
// permissions, and the daemon never opens a host path on a client's behalf.

export type SaveFormat = 'oci-archive' | 'docker-archive';

export interface SavedLayer {
  /** Digest of the layer blob in the archive ("sha256:<hex>"); blobs are uncompressed tars, so = diffId. */
  digest: string;
  diffId: string;
  /** Bytes of the layer tar. */
  size: number;
  /** true when the blob is the byte-exact tar the layer was loaded from (kept for foreign layers). */
  original: boolean;
}

export interface SaveResponse {
  format: SaveFormat;
  /** Image id written to the archive (sha256 of the config blob). */
  id: string;
  refs: string[];
  layers: SavedLayer[];
  /** Digest of the config blob, and of the manifest (oci-archive). */
  config: string;
  manifest?: string;
  /** Bytes of the archive. */
  size: number;
  warnings: string[];
}

export interface LoadedLayer {
  diffId: string;
  /** Layer (chain) id in the store. */
  id: string;
  /** Bytes of file content. */
  size: number;
  /** Already present: nothing extracted. */
  reused: boolean;
}

export interface LoadedImage {
  id: string;
  refs: string[];
  layers: LoadedLayer[];
  /** The image already existed (only tags were added). */
  existed: boolean;
}

export interface LoadResponse {
  format: SaveFormat;
  images: LoadedImage[];
  warnings: string[];
}
