// The two system calls Node lacks and meshwork needs: setns(2) for working
// inside a pod's network namespace, and getsockopt(SO_ORIGINAL_DST) for the
// sidecar to learn where a redirected connection was going.
#include <napi.h>
#include <sched.h>
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

static Napi::Value Fail(Napi::Env env, const char* syscall, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.Set("code", Napi::String::New(env, err == ENOENT ? "ENOENT" : err == EPERM ? "EPERM" : err == EINVAL ? "EINVAL" : err == EBADF ? "EBADF" : "EOTHER"));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// setns(fd, nstype): switches the calling thread (Node's main thread).
static Napi::Value SetNs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "setns(fd, nstype?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int type = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : CLONE_NEWNET;
  if (setns(fd, type) != 0) return Fail(env, "setns", errno);
  return env.Undefined();
}

// originalDst(fd): {address, port, family} of a connection redirected by netfilter.
static Napi::Value OriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "originalDst(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  char buf[INET6_ADDRSTRLEN];
  Napi::Object out = Napi::Object::New(env);
  struct sockaddr_in6 a6;
  socklen_t len6 = sizeof(a6);
  memset(&a6, 0, sizeof(a6));
  // Try IPv4 first: an IPv4 connection on a dual-stack socket answers SO_ORIGINAL_DST.
  struct sockaddr_in a4;
  socklen_t len4 = sizeof(a4);
  memset(&a4, 0, sizeof(a4));
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &a4, &len4) == 0) {
    inet_ntop(AF_INET, &a4.sin_addr, buf, sizeof(buf));
    out.Set("address", Napi::String::New(env, buf));
    out.Set("port", Napi::Number::New(env, ntohs(a4.sin_port)));
    out.Set("family", Napi::Number::New(env, 4));
    return out;
  }
  int err4 = errno;
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &a6, &len6) == 0) {
    inet_ntop(AF_INET6, &a6.sin6_addr, buf, sizeof(buf));
    out.Set("address", Napi::String::New(env, buf));
    out.Set("port", Napi::Number::New(env, ntohs(a6.sin6_port)));
    out.Set("family", Napi::Number::New(env, 6));
    return out;
  }
  return Fail(env, "getsockopt(SO_ORIGINAL_DST)", err4 == ENOENT ? errno : err4);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setns", Napi::Function::New(env, SetNs));
  exports.Set("originalDst", Napi::Function::New(env, OriginalDst));
  exports.Set("CLONE_NEWNET", Napi::Number::New(env, CLONE_NEWNET));
  return exports;
}

NODE_API_MODULE(meshwork_native, Init)
