{
  "targets": [
    {
      "target_name": "verity_kernel",
      "sources": ["verity_kernel.c"],
      "cflags": ["-O3", "-Wall", "-Wno-deprecated-declarations"]
    }
  ]
}
