// Model's image inputs: an image file, upload or decoded tensor made into what forward's
// argument takes, as the manifest describes it (colour order, size, layout, dtype).
#include "model/model_impl.h"
#include "torchship/datatype.h"
#include "torchship/image.h"

namespace torchship {
namespace {

ImageSpec image_spec_of(const TensorSpec* spec) {
  return spec && spec->image ? *spec->image : ImageSpec{};
}

// A prepared H x W x C uint8 image in the layout and dtype the manifest asks for.
at::Tensor lay_out(at::Tensor image, const TensorSpec* spec) {
  std::string layout = spec ? spec->layout : "";
  if (layout == "CHW" || layout == "BCHW") image = image.permute({2, 0, 1});
  if (layout == "BHWC" || layout == "BCHW") image = image.unsqueeze(0);
  if (spec && !spec->datatype.empty() && spec->datatype != "UINT8") {
    // Float image inputs follow torchvision's ToTensor convention: values in [0, 1].
    image = image.to(scalar_type_from_datatype(spec->datatype)).div_(255);
  }
  return image.contiguous();
}

}  // namespace

c10::IValue Model::image_input(const at::Tensor& hwc_rgb, size_t index) const {
  const TensorSpec* spec = impl_->manifest_input(index);
  return lay_out(prepare_image(hwc_rgb, image_spec_of(spec)), spec);
}

c10::IValue Model::image_input_from_bytes(std::string_view bytes, size_t index,
                                          std::string_view origin) const {
  const TensorSpec* spec = impl_->manifest_input(index);
  return lay_out(decode_image_bytes(bytes, image_spec_of(spec), origin, Decode::Exact,
                                    impl_->max_image_pixels),
                 spec);
}

c10::IValue Model::image_input(const std::filesystem::path& image, size_t index,
                               Decode decode) const {
  // Decodes straight into the manifest's colour order and size.
  const TensorSpec* spec = impl_->manifest_input(index);
  return lay_out(decode_image(image, image_spec_of(spec), decode, impl_->max_image_pixels), spec);
}

}  // namespace torchship
