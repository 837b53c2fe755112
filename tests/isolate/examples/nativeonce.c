/* A native module with the two kinds of once-per-process state isolation is for.
 *
 * Importing it starts a native thread that holds the runtime lock until init()
 * asks for it, as a Rust or C runtime's worker thread would. init() refuses a
 * second call in one process, and in a fork of a process that imported the
 * module it finds the lock held by a thread the fork does not have: it gives up
 * after a second instead of deadlocking for ever.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t runtime_lock = PTHREAD_MUTEX_INITIALIZER;
static sem_t release_request;
static sem_t locked;
static int initialised = 0;

static void *runtime_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&runtime_lock);
    sem_post(&locked);
    while (sem_wait(&release_request) != 0 && errno == EINTR) {
    }
    pthread_mutex_unlock(&runtime_lock);
    return NULL;
}

static PyObject *init(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    if (initialised) {
        PyErr_SetString(PyExc_RuntimeError, "nativeonce: already initialised in this process");
        return NULL;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 1;
    int rc;
    sem_post(&release_request);
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_mutex_timedlock(&runtime_lock, &deadline);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "nativeonce: the runtime lock is held by a thread that does not exist "
                        "in this process");
        return NULL;
    }
    initialised = 1;
    return PyLong_FromLong((long)getpid());
}

static PyMethodDef methods[] = {
    {"init", init, METH_NOARGS, "Initialise the runtime; once per process."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "nativeonce", NULL, -1, methods};

PyMODINIT_FUNC PyInit_nativeonce(void) {
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) {
        return NULL;
    }
    pthread_t thread;
    sem_init(&release_request, 0, 0);
    sem_init(&locked, 0, 0);
    if (pthread_create(&thread, NULL, runtime_thread, NULL) != 0) {
        Py_DECREF(created);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pthread_detach(thread);
    sem_wait(&locked);
    return created;
}
