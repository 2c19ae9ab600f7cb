//! With the `cuda` feature: compile kernels/fused.cu and kernels/vae_nhwc.cu to PTX (embedded,
//! loaded at run time). With `cudnn`: also build the cuDNN shims (kernels/cudnn_sdpa.cpp for flash
//! attention, kernels/cudnn_conv.cpp for the VAE's convolutions).
//! Without features this does nothing, so CPU builds and CI need no CUDA toolkit.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        for name in ["fused", "vae_nhwc"] {
            compile_ptx(&out, name);
        }
    }
    if env::var_os("CARGO_FEATURE_CUDNN").is_some() {
        compile_cudnn_shim();
    }
}

fn cuda_home() -> Option<PathBuf> {
    env::var_os("CUDA_HOME")
        .or_else(|| env::var_os("CUDA_PATH"))
        .map(PathBuf::from)
}

fn compile_ptx(out: &std::path::Path, name: &str) {
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = cuda_home()
        .map(|h| h.join("bin/nvcc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "nvcc".into());
    let ptx = out.join(format!("{name}.ptx"));
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17", "--use_fast_math"])
        .arg(format!("-arch=compute_{cap}"))
        .arg(format!("kernels/{name}.cu"))
        .arg("-o")
        .arg(&ptx)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (source the CUDA environment, see README)",
                nvcc.display()
            )
        });
    assert!(status.success(), "nvcc failed on kernels/{name}.cu");
}

fn compile_cudnn_shim() {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .opt_level(3)
        .file("kernels/cudnn_sdpa.cpp")
        .file("kernels/cudnn_conv.cpp")
        .warnings(false);
    for var in ["CUDNN_INCLUDE_DIR", "CUDNN_FRONTEND_INCLUDE_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(dir) = env::var_os(var) {
            build.include(dir);
        }
    }
    if let Some(home) = cuda_home() {
        build.include(home.join("include"));
        println!("cargo:rustc-link-search=native={}", home.join("lib").display());
        println!("cargo:rustc-link-search=native={}", home.join("lib64").display());
    }
    build.compile("zimage_cudnn");
    println!("cargo:rerun-if-env-changed=CUDNN_LIB");
    if let Some(dir) = env::var_os("CUDNN_LIB") {
        println!("cargo:rustc-link-search=native={}", PathBuf::from(dir).display());
    }
    println!("cargo:rustc-link-lib=dylib=cudnn");
    println!("cargo:rustc-link-lib=dylib=cudart");
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
