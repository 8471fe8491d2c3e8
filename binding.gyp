{
  "targets": [
    {
      "target_name": "meshwork_native",
      "sources": ["native/meshwork_native.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags_cc": ["-O2"]
    },
    {
      "target_name": "meshwork-cni-shim",
      "type": "executable",
      "sources": ["native/cni-shim.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
