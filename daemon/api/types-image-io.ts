// API types of image save/load and container export (routes: daemon/api/routes-image-io.ts).
//
//   POST /images/{ref}/save   body SaveRequest    -> progress stream (types-progress.ts), {result: SaveResponse}
//   POST /images/load         body LoadRequest    -> progress stream (types-progress.ts), {result: LoadResponse}
//   POST /containers/{id}/export body ExportRequest -> ExportResponse
//
// Paths are absolute host paths (the CLI resolves them against its cwd); the daemon reads and
// writes them itself. Outputs are written to a temp file next to the target and renamed into place.

export type SaveFormat = 'oci-archive' | 'docker-archive';

export interface SaveRequest {
  output: string;
  /** Default "oci-archive". */
  format?: SaveFormat;
}

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
  output: string;
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

export interface LoadRequest {
  input: string;
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

export interface ExportRequest {
  output: string;
}

export interface ExportResponse {
  output: string;
  /** Bytes of the tar written. */
  size: number;
}
