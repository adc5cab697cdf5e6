{
  "targets": [
    {
      "target_name": "strata_shims",
      # Every C file under src/ (gyp has no globbing of its own).
      "sources": ["<!@(ls -1 src/*.c)"],
      "defines": ["NAPI_VERSION=8"],
      # Node's common.gypi adds -O3 for Release; we want a plain -O2 build.
      "cflags!": ["-O3"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
