// `layout()`: every list of layout.h as { group: { name: value } }, so that
// JavaScript can check its typed copy against what this binding was built with.
#include "layout.h"

#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

napi_value Layout(napi_env env, napi_callback_info) {
  napi_value out;
  napi_create_object(env, &out);
#define DISTNAT_SET(name, value) napi_set_named_property(env, group_obj, #name, Int(env, value));
#define DISTNAT_GROUP(group, list)                             \
  {                                                            \
    napi_value group_obj;                                      \
    napi_create_object(env, &group_obj);                       \
    list(DISTNAT_SET) napi_set_named_property(env, out, #group, group_obj); \
  }
  DISTNAT_LAYOUT_GROUPS(DISTNAT_GROUP)
#undef DISTNAT_GROUP
#undef DISTNAT_SET
  return out;
}

}  // namespace

void InitLayout(napi_env env, napi_value exports) { SetMethod(env, exports, "layout", Layout); }

}  // namespace distnat
