{
  "targets": [
    {
      "target_name": "distnat_native",
      "sources": ["src/addon.cc", "src/util.cc", "src/fds.cc", "src/tun.cc", "src/raw.cc", "src/poller.cc", "src/batch.cc", "src/gso.cc", "src/coalesce.cc", "src/aead.cc", "src/bpf.cc"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lbpf"],
      "dependencies": ["distnat_bpf"]
    },
    {
      "target_name": "distnat_bpf",
      "type": "none",
      "actions": [
        {
          "action_name": "build_bpf_programs",
          "inputs": ["../bpf/build.sh", "../bpf/router.bpf.c", "../bpf/router.h", "../bpf/dn_bpf.h"],
          "outputs": ["<(PRODUCT_DIR)/bpf/router.bpf.o"],
          "action": ["sh", "../bpf/build.sh", "<(PRODUCT_DIR)/bpf"]
        }
      ]
    }
  ]
}
