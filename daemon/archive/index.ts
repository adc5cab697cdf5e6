// Layer archives: OCI layer tars <-> kernel-overlayfs-format layer directories, and `docker diff`.
export { ArchiveError, CorruptArchiveError, PackError, UnsafeArchiveError, UnsupportedArchiveError } from './errors';
export { ExtractOptions, ExtractResult, extractLayer, importDirectory } from './extract';
export { PackOptions, PackResult, packLayer, packTree } from './pack';
export { layerChanges } from './changes';
