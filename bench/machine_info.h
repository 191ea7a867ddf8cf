// The machine a result was measured on, as results.proto records it.
#ifndef TRUTHPUT_BENCH_MACHINE_INFO_H_
#define TRUTHPUT_BENCH_MACHINE_INFO_H_

#include "bench/device_info.h"
#include "results/results.pb.h"

namespace truthput {

MachineInfo ToMachineInfo(const DeviceIdentity& id);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_MACHINE_INFO_H_
