{
  "targets": [
    {
      "target_name": "verity_kernel",
      "sources": ["verity_kernel.c", "sha256_x2.c"],
      "cflags": ["-O3", "-Wall", "-Wno-deprecated-declarations"]
    },
    {
      "target_name": "store_sys",
      "sources": ["store_sys.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
