{
  "targets": [
    {
      "target_name": "distnat_native",
      "sources": ["src/addon.cc", "src/util.cc", "src/fds.cc", "src/tun.cc", "src/raw.cc", "src/poller.cc", "src/batch.cc", "src/gso.cc", "src/coalesce.cc", "src/aead.cc", "src/cbc-hmac.cc", "src/esp-call.cc", "src/hmac.cc", "src/hmac-state.cc", "src/layout.cc", "src/notify.cc"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "distnat_bpf",
      "sources": ["src/bpf-addon.cc", "src/bpf.cc", "src/util.cc", "src/fds.cc"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lbpf"],
      "dependencies": ["distnat_bpf_programs"]
    },
    {
      "target_name": "distnat_bpf_programs",
      "type": "none",
      "actions": [
        {
          "action_name": "build_bpf_programs",
          "inputs": ["../bpf/build.sh", "../bpf/dn_bpf.h", "../bpf/router.bpf.c", "../bpf/router.h", "../bpf/host.bpf.c", "../bpf/host.h"],
          "outputs": ["<(PRODUCT_DIR)/bpf/router.bpf.o", "<(PRODUCT_DIR)/bpf/host.bpf.o"],
          "action": ["sh", "../bpf/build.sh", "<(PRODUCT_DIR)/bpf"]
        }
      ]
    }
  ]
}
