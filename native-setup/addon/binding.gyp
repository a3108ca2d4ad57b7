{
  "targets": [
    {
      "target_name": "distnat_native",
      "sources": ["src/addon.cc", "src/util.cc", "src/fds.cc", "src/tun.cc", "src/raw.cc", "src/poller.cc", "src/batch.cc", "src/gso.cc", "src/coalesce.cc", "src/aead.cc", "src/layout.cc", "src/notify.cc"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
