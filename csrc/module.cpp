// The Python module genint_fast._C. It holds no Python functions: importing it loads the shared
// library, whose static initialisers register every op with the PyTorch dispatcher
// (TORCH_LIBRARY in ops.cpp, TORCH_LIBRARY_IMPL in cpu/ and cuda/). Python reaches the ops as
// torch.ops.genint_fast.<name>.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      "genint_fast native ops (registered as torch.ops.genint_fast.*)",
      -1,    // no per-interpreter state
      nullptr,
  };
  return PyModule_Create(&module_def);
}
}
