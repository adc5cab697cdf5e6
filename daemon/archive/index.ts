// Layer archives: OCI layer tars <-> kernel-overlayfs-format layer directories, and `docker diff`.
export { ArchiveError, CorruptArchiveError, PackError, UnsafeArchiveError, UnsupportedArchiveError } from './errors';
export { ExtractOptions, ExtractResult, extractLayer, importDirectory } from './extract';
export { PackOptions, PackResult, notUnder, packLayer, packTree } from './pack';
export { layerChanges, mountpointLeftovers } from './changes';
