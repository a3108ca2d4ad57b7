{
  "targets": [
    {
      "target_name": "distnat_native",
      "sources": ["src/addon.cc"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
